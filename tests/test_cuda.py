"""The core on CUDA: exactness, bf16/fp16 autocast, allocator-measured savings. Skipped without a GPU."""
import copy

import pytest
import torch
import torch.nn as nn
import torchvision

import dropit

pytestmark = pytest.mark.cuda


def _grads(model, x, dtype=None):
    model.zero_grad()
    with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        out = model(x)
    out.float().square().mean().backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Linear(64, 32), (8, 16, 64)),
    (lambda: nn.Conv2d(16, 32, 3, padding=1, groups=2), (4, 16, 12, 12)),
    (lambda: nn.ConvTranspose2d(16, 8, 3, stride=2), (4, 16, 6, 6)),
    (lambda: nn.MultiheadAttention(32, 4, batch_first=True), None),
])
def test_gamma_zero_equals_plain_on_cuda(make, shape):
    plain = make().cuda()
    converted = dropit.to_dropit(copy.deepcopy(plain), gamma=0.0)
    if shape is None:
        x = torch.randn(4, 10, 32, device="cuda")
        outs = [m(x, x, x, need_weights=False)[0] for m in (plain, converted)]
        torch.testing.assert_close(outs[0], outs[1])
        return
    x = torch.randn(shape, device="cuda")
    (o1, g1), (o2, g2) = _grads(plain, x), _grads(converted, x)
    torch.testing.assert_close(o1, o2)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("strategy", ["mink", "sampled"])
def test_autocast_trains_resnet_and_vit_with_finite_fp32_gradients(dtype, strategy):
    for model, x in [
        (torchvision.models.resnet18(num_classes=10), torch.randn(4, 3, 64, 64)),
        (torchvision.models.vit_b_16(image_size=32, num_classes=10), torch.randn(4, 3, 32, 32)),
    ]:
        nn.init.normal_(model.fc.weight if hasattr(model, "fc") else model.heads.head.weight)
        model = dropit.to_dropit(model.cuda(), strategy=strategy, gamma=0.9)
        out, grads = _grads(model, x.cuda(), dtype)
        assert out.dtype == dtype
        for name, g in grads.items():
            assert g.dtype == torch.float32 and torch.isfinite(g).all(), name


def test_sampled_gradient_close_to_mink_on_cuda():
    base = nn.Linear(256, 64).cuda()
    x = torch.randn(64, 128, 256, device="cuda")
    g = {s: _grads(dropit.to_dropit(copy.deepcopy(base), strategy=s, gamma=0.9), x)[1]["weight"] for s in ("mink", "sampled")}
    rel = (g["mink"] - g["sampled"]).norm() / g["mink"].norm()
    assert rel < 0.1


def test_allocator_peak_of_a_forward_drops_with_dropit():
    def peak(model):
        x = torch.randn(64, 3, 32, 32, device="cuda")
        return dropit.measure_cache(model, x).peak_cuda_bytes

    base = torchvision.models.resnet18(num_classes=100)
    base.conv1, base.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()
    plain = peak(copy.deepcopy(base).cuda())
    converted = peak(dropit.to_dropit(copy.deepcopy(base).cuda(), strategy="sampled", gamma=0.9))
    assert converted < 0.8 * plain


def test_expanding_a_record_on_cuda_needs_no_host_sync():
    x = torch.randn(64, 64, 32, device="cuda")
    record = dropit.sparsify(x, dropit.DropSpec(0.9, "sampled"))
    assert record.layout.kind == "bits"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any device-to-host sync now raises
    try:
        dense = dropit.expand(record)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    keep = dropit.STRATEGIES["sampled"](x.view(-1), 0.9).view_as(x)
    assert torch.equal(dense, torch.where(keep, x, 0))
