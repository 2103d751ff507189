"""The quantization kernels: the torch reference's contract, and the C kernels against it bit for bit."""
import math

import pytest
import torch

from dropit import kernels
from dropit.kernels import cpu, quant_cpu
from dropit.kernels import quant_reference as ref
from dropit.quant import fewbit_tables

needs_c = pytest.mark.skipif(cpu.library() is None, reason="no C compiler: the CPU kernels are not built")

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
SIZES = [0, 1, 7, 64, 65, 1001, 40_003]
SETTINGS = [(8, 64), (8, 7), (8, 1), (4, 32), (4, 2), (4, 64)]


def _bits(t):
    return t.view(torch.uint8) if t.is_floating_point() else t


def _assert_same(a, b):
    """Equal bit for bit, except that NaN only has to be NaN (torch's own NaN bits vary by code path)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.is_floating_point():
        assert torch.equal(a.isnan(), b.isnan())
        a, b = a.nan_to_num(0.0), b.nan_to_num(0.0)
    assert torch.equal(_bits(a), _bits(b))


def _inputs(n, dtype):
    g = torch.Generator().manual_seed(n)
    yield "gaussian", (torch.randn(n, generator=g) * 3).to(dtype)
    yield "zeros", torch.zeros(n, dtype=dtype)
    yield "constant", torch.full((n,), -1.5, dtype=dtype)
    yield "tiny", torch.full((n,), 1e-35).to(dtype)  # below 2^-100 in bf16/fp32: stored as zeros
    x = (torch.randn(n, generator=g) * torch.logspace(-3, 3, n)).to(dtype)
    if n > 8:
        x[[1, 3, 5, 7]] = torch.tensor([math.nan, math.inf, -math.inf, -0.0], dtype=dtype)
    yield "wide-nan-inf", x


@needs_c
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_quantize_dequantize_match_reference(n, dtype):
    for name, x in _inputs(n, dtype):
        for bits, group in SETTINGS:
            codes, scales = quant_cpu.quantize(x, bits, group)
            rc, rs = ref.quantize(x, bits, group)
            _assert_same(codes, rc)
            _assert_same(scales, rs)
            _assert_same(quant_cpu.dequantize(codes, scales, bits, group, n, dtype),
                         ref.dequantize(rc, rs, bits, group, n, dtype))


@needs_c
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("function", ["gelu_none", "gelu_tanh", "silu"])
def test_fewbit_kernels_match_reference(n, dtype, function):
    boundaries, levels = fewbit_tables(function)
    for name, x in _inputs(n, dtype):
        codes = quant_cpu.fewbit_encode(x, boundaries)
        _assert_same(codes, ref.fewbit_encode(x, boundaries))
        grad = torch.randn(n, generator=torch.Generator().manual_seed(1)).to(dtype)
        _assert_same(quant_cpu.fewbit_grad(grad, codes, levels), ref.fewbit_grad(grad, codes, levels))


@pytest.mark.parametrize("bits,group", [(8, 64), (4, 32), (8, 5)])
def test_error_is_at_most_half_a_step(bits, group):
    x = torch.randn(10_000) * torch.linspace(0.01, 100, 10_000)
    codes, scales = kernels.quantize(x, bits, group)
    back = kernels.dequantize(codes, scales, bits, group, x.numel(), x.dtype)
    step = scales.repeat_interleave(group)[: x.numel()]
    assert (back - x).abs().le(step / 2 * (1 + 1e-5)).all()
    assert scales.dtype == torch.float32 and scales.numel() == math.ceil(x.numel() / group)
    assert codes.numel() == (x.numel() if bits == 8 else (x.numel() + 1) // 2)


def test_nonfinite_come_back_as_nan_and_spare_their_group():
    x = torch.tensor([1.0, math.nan, -2.0, math.inf, 0.5, -math.inf, 0.0, 3.0])
    for bits in (8, 4):
        codes, scales = kernels.quantize(x, bits, 8)
        back = kernels.dequantize(codes, scales, bits, 8, 8, x.dtype)
        assert back.isnan().tolist() == [False, True, False, True, False, True, False, False]
        assert scales.item() == pytest.approx(3.0 / ref.qmax(bits))  # the finite absmax sets the scale
        assert back[[0, 2, 6, 7]].tolist() == pytest.approx([1.0, -2.0, 0.0, 3.0], abs=scales.item() / 2)


def test_constant_and_zero_groups_are_exact():
    x = torch.cat([torch.full((64,), -1.5), torch.zeros(64)])
    for bits, group in [(8, 64), (4, 32)]:
        codes, scales = kernels.quantize(x, bits, group)
        assert torch.equal(kernels.dequantize(codes, scales, bits, group, 128, x.dtype), x)


def test_nibbles_pack_in_element_order():
    codes = torch.tensor([1, 2, 3, 4, 5], dtype=torch.uint8)
    packed = ref.pack_nibbles(codes)
    assert packed.tolist() == [0x21, 0x43, 0x85]  # the odd tail's high nibble is 8 (code 0)
    assert torch.equal(ref.unpack_nibbles(packed, 5), codes)


@pytest.mark.parametrize("function", ["gelu_none", "gelu_tanh", "silu"])
def test_fewbit_tables_fit_the_derivative(function):
    boundaries, levels = fewbit_tables(function)
    assert boundaries.shape == (14,) and levels.shape == (16,) and levels[15].isnan()
    assert (boundaries.diff() > 0).all()
    x = torch.linspace(-6, 6, 10_001, requires_grad=True)
    y = torch.nn.functional.silu(x) if function == "silu" else torch.nn.functional.gelu(x, approximate=function[5:])
    (deriv,) = torch.autograd.grad(y.sum(), x)
    x = x.detach()
    approx = levels[torch.bucketize(x, boundaries)]
    assert (approx - deriv).abs().max() < 0.12  # 15 bins over a derivative spanning about 1.2
    weight = torch.exp(-0.5 * (x / 2) ** 2)  # the fit's weight: pre-activations of about unit scale
    assert ((approx - deriv).pow(2) * weight).sum().div(weight.sum()).sqrt() < 0.03
