"""The quantized companions on CUDA: exact forward, close gradients, autocast, no host sync. Skipped without a GPU."""
import copy

import pytest
import torch
import torch.nn as nn

import dropit
from test_quant_convert import _small_vit

pytestmark = pytest.mark.cuda


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Flatten(2), nn.Linear(64, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 8), nn.SiLU())


def _run(model, x, dtype):
    model.zero_grad()
    with torch.autocast("cuda", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        out = model(x)
    r = torch.linspace(-1, 1, out.numel(), device="cuda").view_as(out)
    (out.float() * r).sum().backward()
    return out.detach(), {n: p.grad.float() for n, p in model.named_parameters()}


@pytest.mark.parametrize("dtype", [None, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("level", ["int8", "int4"])
@pytest.mark.parametrize("build, shape", [(_cnn, (4, 3, 8, 8)), (_small_vit, (4, 3, 16, 16))])
def test_quantized_companions_on_cuda(build, shape, level, dtype):
    base = build().cuda()
    alone = dropit.to_dropit(copy.deepcopy(base), gamma=0.5)
    quantized = dropit.to_dropit(copy.deepcopy(base), gamma=0.5, quantize=level)
    x = torch.randn(shape, device="cuda")
    out_d, g_d = _run(alone, x, dtype)
    _run(quantized, x, dtype)  # once first: the derivative tables' one-time copy to the GPU
    torch.cuda.set_sync_debug_mode("error")  # quantizing and dequantizing never wait for the GPU
    try:
        out_q, g_q = _run(quantized, x, dtype)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.testing.assert_close(out_q, out_d, rtol=0, atol=0)
    bound = 0.05 if level == "int8" else 0.3
    for n in g_d:
        assert float((g_q[n] - g_d[n]).norm() / g_d[n].norm().clamp_min(1e-12)) < bound, n
    storage = dropit.measure_cache(quantized, x).by_storage()
    assert storage.get(level, 0) > 0
