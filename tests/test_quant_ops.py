"""The quantization kernels as custom ops: the same tensors as the torch reference, eager and inside compiled
graphs, on odd sizes, zeros, constants, NaN/Inf and every dtype."""
import math

import pytest
import torch

from dropit import quant_ops
from dropit.kernels import cpu
from dropit.kernels import quant_reference as ref
from dropit.quant import fewbit_tables

needs_c = pytest.mark.skipif(cpu.library() is None, reason="no C compiler: the CPU kernels are not built")
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _same(a, b):
    """Equal bit for bit, NaN only has to be NaN."""
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.is_floating_point():
        assert torch.equal(a.isnan(), b.isnan())
        a, b = a.nan_to_num(0.0), b.nan_to_num(0.0)
    assert torch.equal(a, b)


def _inputs(n, dtype):
    g = torch.Generator().manual_seed(n)
    yield (torch.randn(n, generator=g) * 3).to(dtype)
    yield torch.zeros(n, dtype=dtype)
    yield torch.full((n,), -1.5, dtype=dtype)
    x = (torch.randn(n, generator=g) * torch.logspace(-3, 3, n)).to(dtype)
    if n > 8:
        x[[1, 3, 5, 7]] = torch.tensor([math.nan, math.inf, -math.inf, -0.0], dtype=dtype)
    yield x


def _quant_roundtrip(x, bits, group):
    codes, scales = quant_ops.quantize(x, bits, group)
    return codes, scales, quant_ops.dequantize(codes, scales, bits, group, x.numel(), x.dtype)


def _fewbit(x, g, boundaries, levels):
    codes = quant_ops.fewbit_encode(x, boundaries)
    return codes, quant_ops.fewbit_grad(g, codes, levels)


def _expected(x, bits, group):
    codes, scales = ref.quantize(x, bits, group)
    return codes, scales, ref.dequantize(codes, scales, bits, group, x.numel(), x.dtype)


@needs_c
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 65, 1001])
def test_custom_ops_match_the_reference(n, dtype):
    boundaries, levels = fewbit_tables("gelu_none")
    for x in _inputs(n, dtype):
        for bits, group in ((8, 64), (8, 7), (4, 32), (4, 2)):
            codes, scales = torch.ops.dropit.quantize(x, bits, group)
            deq = torch.ops.dropit.dequantize(codes, scales, bits, group, n, dtype)
            for got, want in zip((codes, scales, deq), _expected(x, bits, group)):
                _same(got, want)
        fcodes = torch.ops.dropit.fewbit_encode(x, boundaries)
        _same(fcodes, ref.fewbit_encode(x, boundaries))
        _same(torch.ops.dropit.fewbit_grad(x, fcodes, levels), ref.fewbit_grad(x, fcodes, levels))


@needs_c
def test_fake_implementations_agree_with_the_kernels():
    x = torch.randn(1001)
    boundaries, levels = fewbit_tables("silu")
    codes, scales = torch.ops.dropit.quantize(x, 4, 32)
    torch.library.opcheck(torch.ops.dropit.quantize.default, (x, 4, 32))
    torch.library.opcheck(torch.ops.dropit.quantize.default, (x, 8, 64))
    torch.library.opcheck(torch.ops.dropit.dequantize.default, (codes, scales, 4, 32, 1001, torch.float32))
    torch.library.opcheck(torch.ops.dropit.fewbit_encode.default, (x, boundaries))
    fcodes = torch.ops.dropit.fewbit_encode(x, boundaries)
    torch.library.opcheck(torch.ops.dropit.fewbit_grad.default, (x, fcodes, levels))


@needs_c
@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_graphs_call_the_ops_and_match_the_reference(dtype):
    boundaries, levels = fewbit_tables("gelu_tanh")
    quant4 = torch.compile(lambda x: _quant_roundtrip(x, 4, 32), fullgraph=True)
    quant8 = torch.compile(lambda x: _quant_roundtrip(x, 8, 64), fullgraph=True)
    fewbit = torch.compile(lambda x, g: _fewbit(x, g, boundaries, levels), fullgraph=True)
    for x in _inputs(1001, dtype):
        for got, want in zip(quant4(x), _expected(x, 4, 32)):
            _same(got, want)
        for got, want in zip(quant8(x), _expected(x, 8, 64)):
            _same(got, want)
        g = torch.randn(x.shape).to(dtype)
        codes, grad = fewbit(x, g)
        _same(codes, ref.fewbit_encode(x, boundaries))
        _same(grad, ref.fewbit_grad(g, codes, levels))
    x = torch.randn(1001).to(dtype)
    ops = {str(n.target) for n in torch._dynamo.explain(lambda x: _quant_roundtrip(x, 4, 32))(x).graphs[0].graph.nodes}
    assert {"dropit.quantize.default", "dropit.dequantize.default"} <= ops
    ops8 = {str(n.target) for n in torch._dynamo.explain(lambda x: _quant_roundtrip(x, 8, 64))(x).graphs[0].graph.nodes}
    assert {"dropit.quantize.default", "dropit.dequantize.default"} <= ops8


def test_eager_calls_are_the_kernels_themselves():
    x = torch.randn(100)
    for got, want in zip(_quant_roundtrip(x, 4, 32), _expected(x, 4, 32)):
        _same(got, want)
    for got, want in zip(_quant_roundtrip(x, 8, 64), _expected(x, 8, 64)):
        _same(got, want)
