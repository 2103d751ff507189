"""The fused C kernels against their torch reference, bit for bit."""

import pytest
import torch

from dropit import kernels
from dropit.kernels import cpu, reference
from kernel_checks import assert_same as _assert_same
from kernel_checks import awkward_inputs as _inputs

pytestmark = pytest.mark.skipif(cpu.library() is None, reason="no C compiler: the CPU kernels are not built")

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
SIZES = [0, 1, 7, 8, 13, 100, 1000, 40_001, 131_075, 300_007]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_threshold_matches_reference(n, dtype):
    for name, x in _inputs(n, dtype):
        for gamma in (0.0, 0.5, 0.9, 0.999):
            rank = kernels.sample_rank(n, gamma)
            assert cpu.threshold(x, rank, kernels.SAMPLE_SIZE) == int(reference.threshold(x, rank)), (name, gamma)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_kth_key_matches_reference(n, dtype):
    for name, x in _inputs(n, dtype):
        for rank in {0, 1, n // 3, n, n + 1}:
            assert cpu.kth_key(x, rank) == int(reference.kth_key(x, rank)), (name, rank)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_compress_and_expand_match_reference(n, dtype):
    for name, x in _inputs(n, dtype):
        thr = int(reference.threshold(x, kernels.sample_rank(n, 0.9)))
        for cap in {max(1, n // 10 + 7), n + 1}:  # with t = -1 (keep all) the first overflows
            for t in (thr, -1):
                ours = cpu.compress(x, cap, t, None)
                ref = reference.compress(x, cap, torch.tensor(t), None)
                _assert_same(ours, ref)
                _assert_same([cpu.expand(ours[0], ours[1], n)], [reference.expand(ref[0], ref[1], n)])
            mask = torch.rand(n, generator=torch.Generator().manual_seed(1)) < 0.3
            _assert_same(cpu.compress(x, cap, -1, mask), reference.compress(x, cap, None, mask))


def test_compress_does_not_depend_on_the_thread_count():
    x = torch.randn(3_000_017)
    thr = int(reference.threshold(x, kernels.sample_rank(x.numel(), 0.8)))
    results = []
    for threads in (1, 2, 3):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            results.append(cpu.compress(x, 700_000, thr, None))
        finally:
            torch.set_num_threads(old)
    for r in results[1:]:
        _assert_same(r, results[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_relu_kernels_match_reference(n, dtype):
    for name, x in _inputs(n, dtype):
        bits = cpu.pack_nonzero(x)
        _assert_same([bits], [reference.pack_nonzero(x)])
        grad = torch.randn(n, generator=torch.Generator().manual_seed(2)).to(dtype)
        _assert_same([cpu.mask_grad(grad, bits)], [reference.mask_grad(grad, bits)])


def test_dispatch_uses_the_c_kernels_on_cpu_and_the_reference_without_them(monkeypatch):
    x = torch.randn(10)
    assert kernels.backend(x) == "c"
    monkeypatch.setattr(cpu, "library", lambda: None)
    assert kernels.backend(x) == "torch"
    assert kernels.backend(torch.arange(10)) == "torch"  # not a float dtype


def test_reference_unpack_roundtrip_and_layout():
    mask = torch.zeros(16, dtype=torch.bool)
    mask[[0, 3, 9]] = True
    assert reference.pack_bits(mask).tolist() == [0b1001, 0b10]
    assert torch.equal(reference.unpack_bits(reference.pack_bits(mask), 16).bool(), mask)


def test_without_a_compiler_the_reference_runs_with_one_warning(monkeypatch):
    cpu.library.cache_clear()
    monkeypatch.setattr(cpu, "_compiler", lambda: None)
    try:
        with pytest.warns(UserWarning, match="no C compiler"):
            assert cpu.library() is None
        assert kernels.backend(torch.randn(3)) == "torch"
    finally:
        cpu.library.cache_clear()


def test_a_failing_build_leaves_no_file_behind(monkeypatch, tmp_path):
    cpu.library.cache_clear()
    monkeypatch.setenv("DROPIT_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu, "FLAGS", cpu.FLAGS + ["-DDROPIT_BROKEN", "-include", "/nonexistent.h"])
    try:
        with pytest.warns(UserWarning, match="could not build"):
            assert cpu.library() is None
        assert list(tmp_path.iterdir()) == []
    finally:
        cpu.library.cache_clear()


def test_the_portable_build_without_avx512_matches_reference_too(monkeypatch, tmp_path):
    """-march=native takes the AVX-512 paths on this machine; the generic C code must agree as well."""
    cpu.library.cache_clear()
    monkeypatch.setenv("DROPIT_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu, "FLAGS", [f for f in cpu.FLAGS if f != "-march=native"])
    try:
        assert cpu.library() is not None
        for dtype in (torch.float32, torch.bfloat16):
            for n in (13, 40_001, 300_007):
                for _, x in _inputs(n, dtype):
                    thr = int(reference.threshold(x, kernels.sample_rank(n, 0.9)))
                    cap = n // 10 + 3
                    _assert_same(cpu.compress(x, cap, thr, None), reference.compress(x, cap, torch.tensor(thr), None))
                    v, b, _ = reference.compress(x, cap, torch.tensor(thr), None)
                    _assert_same([cpu.expand(v, b, n)], [reference.expand(v, b, n)])
                    _assert_same([cpu.pack_nonzero(x)], [reference.pack_nonzero(x)])
    finally:
        cpu.library.cache_clear()
