"""The Triton kernels, run by Triton's interpreter on CPU tensors, against the torch reference, bit for bit.

How the interpreter is switched on: ``triton.jit`` reads ``TRITON_INTERPRET``
when it decorates a function, and triton's own library functions (``tl.sum``,
``tl.cumsum``) are decorated when ``triton.language`` is first imported, which
in a test run happens early (importing torchvision or ``torch._dynamo`` imports
it). So the variable must be set before the process starts. This file therefore runs
in one of two modes:

- with ``TRITON_INTERPRET=1`` set by the caller, every check below runs here:
  ``TRITON_INTERPRET=1 python -m pytest tests/test_kernels_triton.py``;
- otherwise (the usual suite run) the checks are skipped here and
  :func:`test_triton_kernels_under_the_interpreter` runs this file again in a
  subprocess with the variable set, and fails if any check fails there. The
  compiled kernels that a GPU run of ``tests/test_cuda.py`` uses are never
  switched to the interpreter.

The interpreter is lenient where the compiler is not (a block-valued ``if``
passes it, for one), so :func:`test_every_kernel_compiles_for_a_hopper_gpu_without_one`
also compiles every kernel specialisation to sm_90 machine code with triton's
bundled ptxas: no GPU needed, about 25 s on two cores (cached afterwards).

The interpreter runs each program in Python, one after another (about 10 ms a
program): most checks use a block of 256 elements, so that small tensors still
span many blocks, and a few run the default block on ~100k elements.
"""
import math
import os
import subprocess
import sys

import pytest
import torch

from dropit.kernels import reference
from dropit.record import from_memory_order, memory_order
from kernel_checks import assert_same as _assert_same
from kernel_checks import awkward_inputs as _inputs

triton = pytest.importorskip("triton")

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
SMALL = 256  # block of the small-tensor checks


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETING, reason="this process already interprets")
def test_triton_kernels_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-rfEs",
           "-k", "not under_the_interpreter and not compiles_for"]  # those two run out here
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "passed" in summary and "skipped" not in summary, summary


def _specialisations(tc, n_type):
    """(kernel, signature, constexprs) of each specialisation that the module's functions launch."""
    for width, (e, key) in {2: ("*i16", 0x7FFF), 4: ("*i32", 0x7FFFFFFF), 8: ("*i64", 0x7FFFFFFFFFFFFFFF)}.items():
        block = {"BLOCK": tc.BLOCK}
        for use_mask in (False, True):
            yield tc._select, dict(x_ptr=e, mask_ptr="*u8", thr_ptr="*i64", bits_ptr="*u8", counts_ptr="*i32",
                                   n=n_type, KEY_MASK="constexpr", USE_MASK="constexpr", BLOCK="constexpr"), \
                {"KEY_MASK": key, "USE_MASK": use_mask, **block}
        yield tc._gather, dict(x_ptr=e, bits_ptr="*u8", ends_ptr="*i64", values_ptr=e, count_ptr="*i64", n=n_type,
                               capacity=n_type, blocks="i32", BLOCK="constexpr"), block
        yield tc._scatter, dict(values_ptr=e, bits_ptr="*u8", ends_ptr="*i64", out_ptr=e, n=n_type, capacity=n_type,
                                BLOCK="constexpr"), block
        yield tc._nonzero, dict(x_ptr=e, bits_ptr="*u8", n=n_type, KEY_MASK="constexpr", BLOCK="constexpr"), \
            {"KEY_MASK": key, **block}
        yield tc._mask_grad, dict(g_ptr=e, bits_ptr="*u8", out_ptr=e, n=n_type, BLOCK="constexpr"), block
    yield tc._popcount, dict(bits_ptr="*u8", counts_ptr="*i32", n=n_type, BLOCK="constexpr"), {"BLOCK": tc.BLOCK}


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETING, reason="the interpreter's kernels are not compiled")
def test_every_kernel_compiles_for_a_hopper_gpu_without_one():
    """The real compiler (to sm_90 machine code) checks what the interpreter does not: types, layouts, scalar ifs."""
    from dropit.kernels import triton_cuda as tc

    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError:
        pytest.skip("this triton has no ahead-of-time compile API")
    target = GPUTarget("cuda", 90, 32)
    for n_type in ("i32", "i64"):  # n >= 2**31 passes n as int64
        for kernel, signature, constexprs in _specialisations(tc, n_type):
            compiled = triton.compile(ASTSource(kernel, signature, constexprs), target=target)
            assert compiled.asm["cubin"], kernel.__name__


@pytest.fixture(scope="module")
def tk():
    """The Triton kernels module, its kernels run by the interpreter in this process."""
    if not INTERPRETING:
        pytest.skip("runs in test_triton_kernels_under_the_interpreter's subprocess")
    from dropit.kernels import triton_cuda

    assert type(triton_cuda._select).__name__ == "InterpretedFunction"
    return triton_cuda


def _capacities(count, n):
    """An overflowing capacity (when anything is selected) and a roomy one."""
    return sorted({max(1, count - 3), n + 1})


def _check_compress(tk, x, thr=None, mask=None, block=SMALL, capacities=None):
    n = x.numel()
    t = None if thr is None else torch.tensor(thr, dtype=torch.int64)
    selected = int((reference.magnitude_keys(x) > t).sum() if mask is None else mask.bool().sum())
    for cap in capacities or _capacities(selected, n):
        ours = tk.compress(x, cap, t, mask, block=block)
        ref = reference.compress(x, cap, t, mask)
        _assert_same(ours, ref)
        assert int(ours[2]) == selected
        _assert_same([tk.expand(ours[0], ours[1], n, block=block)], [reference.expand(ref[0], ref[1], n)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 8, 13, 1001])
def test_compress_and_expand_match_reference(tk, n, dtype):
    for _, x in _inputs(n, dtype):
        thr = int(reference.threshold(x, reference.sample_rank(n, 0.9)))
        for t in (thr, -1):
            _check_compress(tk, x, thr=t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_default_block_on_a_larger_tensor(tk, dtype):
    x = torch.randn(100_003, generator=torch.Generator().manual_seed(3)).to(dtype)
    x[[5, 40_000, 99_999]] = torch.tensor([math.nan, math.inf, -math.inf], dtype=dtype)
    thr = int(reference.threshold(x, reference.sample_rank(x.numel(), 0.9)))
    _check_compress(tk, x, thr=thr, block=tk.BLOCK)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n", [13, 1000, 4099])
def test_compress_with_a_mask(tk, n, dtype):
    x = torch.randn(n, generator=torch.Generator().manual_seed(n)).to(dtype)
    mask = torch.rand(n, generator=torch.Generator().manual_seed(1)) < 0.3
    _check_compress(tk, x, mask=mask)
    _check_compress(tk, x, mask=mask.to(torch.uint8) * 7)  # any non-zero byte selects


@pytest.mark.parametrize("cap", [1, 255, 256, 257, 700, 1023])
def test_overflow_keeps_the_first_in_memory_order_across_blocks(tk, cap):
    n = 1001  # everything selected: the stored ones are exactly the first cap
    x = torch.arange(1, n + 1, dtype=torch.float32)
    values, bits, count = tk.compress(x, cap, torch.tensor(-1), block=SMALL)
    stored = min(cap, n)
    assert int(count) == n
    assert torch.equal(values[:stored], x[:stored]) and not values[stored:].any()
    assert torch.equal(reference.unpack_bits(bits, n).bool(), torch.arange(n) < stored)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_channels_last_in_memory_order(tk, dtype):
    x = torch.randn(3, 10, 7, 9, generator=torch.Generator().manual_seed(4)).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    flat, perm = memory_order(x)
    assert perm is not None and flat.data_ptr() == x.data_ptr()  # a view: not copied
    thr = reference.threshold(flat, reference.sample_rank(flat.numel(), 0.8))
    keep = reference.magnitude_keys(flat) > thr
    ours = tk.compress(flat, int(keep.sum()), thr, block=SMALL)
    _assert_same(ours, reference.compress(flat, int(keep.sum()), thr))
    values, bits, _ = ours
    dense = from_memory_order(tk.expand(values, bits, flat.numel(), block=SMALL), x.shape, perm)
    assert dense.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(dense, torch.where(from_memory_order(keep, x.shape, perm), x, 0))


def test_expand_ignores_set_bits_beyond_the_values(tk):
    n = 1000
    bits = reference.pack_bits(torch.rand(n, generator=torch.Generator().manual_seed(5)) < 0.5)
    values = torch.randn(100)  # far fewer than the set bits: the later ones expand to zero
    _assert_same([tk.expand(values, bits, n, block=SMALL)], [reference.expand(values, bits, n)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 13, 1000, 4099])
def test_relu_kernels_match_reference(tk, n, dtype):
    grad = torch.randn(n, generator=torch.Generator().manual_seed(2)).to(dtype)
    for _, x in _inputs(n, dtype):
        bits = tk.pack_nonzero(x, block=SMALL)
        _assert_same([bits], [reference.pack_nonzero(x)])
        _assert_same([tk.mask_grad(grad, bits, block=SMALL)], [reference.mask_grad(grad, bits)])


def test_empty_tensors(tk):
    x = torch.empty(0)
    _assert_same(tk.compress(x, 3, torch.tensor(-1)), reference.compress(x, 3, torch.tensor(-1)))
    assert tk.expand(torch.zeros(3), torch.empty(0, dtype=torch.uint8), 0).shape == (0,)
    assert tk.pack_nonzero(x).shape == (0,) and tk.mask_grad(x, torch.empty(0, dtype=torch.uint8)).shape == (0,)


def test_compress_needs_exactly_one_selection_and_a_valid_block(tk):
    x = torch.randn(10)
    with pytest.raises(ValueError):
        tk.compress(x, 3)
    with pytest.raises(ValueError):
        tk.compress(x, 3, torch.tensor(0), torch.ones(10, dtype=torch.bool))
    with pytest.raises(ValueError):
        tk.expand(x, torch.zeros(2, dtype=torch.uint8), 10, block=12)
