"""How the group size and the rounding of the quantized companions move their gradients.

    python benchmarks/quant_choices.py        # CIFAR ResNet-18 and a small ViT, one batch of real CIFAR-100

The measurement behind the defaults of :mod:`dropit.quant`. One plain
forward/backward records, for every BatchNorm, LayerNorm, GELU and attention,
its real input and the real gradient arriving at its output. Each op's backward
is then rerun from the dequantized input, per setting, and compared with the
exact backward: the relative error ||g_q - g|| / ||g|| of the input gradient
(what flows on to every earlier layer), over all layers of a kind together.
Stochastic rounding is unbiased, so its row also gives the error of the mean of
4 draws ("bias"): for nearest rounding that is the error itself.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dropit.lab.models.catalog import build_model  # noqa: E402
from dropit import kernels  # noqa: E402
from dropit.kernels import quant_reference as ref  # noqa: E402
from dropit.quant import fewbit_tables  # noqa: E402


def stochastic(flat, bits, group, gen):
    """Like ref.quantize + dequantize, rounding up with probability equal to the fraction."""
    q = ref.qmax(bits)
    x = ref._grouped(flat.float(), group)
    absmax = x.abs().amax(1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / q, 1.0)
    y = x / scale
    low = y.floor()
    up = torch.rand(y.shape, generator=gen) < (y - low)
    return ((low + up).clamp(-q, q) * scale).view(-1)[: flat.numel()].to(flat.dtype)


def nearest(flat, bits, group):
    codes, scales = kernels.quantize(flat, bits, group)
    return kernels.dequantize(codes, scales, bits, group, flat.numel(), flat.dtype)


def batches():
    root = os.environ.get("DROPIT_DATA")
    if root and (Path(root) / "cifar-100-python").exists():
        from dropit.lab.data.datasets import CIFAR100_MEAN, CIFAR100_STD, read_cifar100

        images, labels = read_cifar100(Path(root) / "cifar-100-python", "train")
        x = torch.from_numpy(images[:32]).float().div(255)
        mean, std = torch.tensor(CIFAR100_MEAN).view(3, 1, 1), torch.tensor(CIFAR100_STD).view(3, 1, 1)
        return (x - mean) / std, torch.from_numpy(labels[:32])
    print("(DROPIT_DATA not set: random images)")
    return torch.randn(32, 3, 32, 32), torch.randint(0, 100, (32,))


def capture(model, x, y, types):
    """(module, input, grad of output) of every module of the given types, from one plain step."""
    records = []
    handles = []

    def hook(module, inputs, output, entry):
        entry["x"] = inputs[0].detach()
        output.register_hook(lambda g: entry.update(g=g.detach()))  # the gradient of this version of output

    for m in model.modules():
        if isinstance(m, types):
            records.append({"module": m})
            handles.append(m.register_forward_hook(lambda mod, i, o, e=records[-1]: hook(mod, i, o, e)))
    F.cross_entropy(model(x), y).backward()
    for h in handles:
        h.remove()
    return records


def bn_grads(r, x):
    """BatchNorm's own backward from x with the exact batch statistics (what the companion does)."""
    m = r["module"]
    _, mean, invstd = torch.native_batch_norm(r["x"], m.weight, m.bias, None, None, True, 0.0, m.eps)
    grads = torch.ops.aten.native_batch_norm_backward(
        r["g"], x, m.weight, None, None, mean, invstd, True, m.eps, [True, True, False])
    return torch.cat([grads[0].flatten(), grads[1]])


def ln_grads(r, x):
    m = r["module"]
    _, mean, rstd = torch.native_layer_norm(r["x"], m.normalized_shape, m.weight, m.bias, m.eps)
    grads = torch.ops.aten.native_layer_norm_backward(
        r["g"], x, m.normalized_shape, mean, rstd, m.weight, m.bias, [True, True, False])
    return torch.cat([grads[0].flatten(), grads[1]])


def gelu_grads(r, x):
    return torch.ops.aten.gelu_backward(r["g"], x, approximate=r["module"].approximate)


def attention_records(model, x, y):
    """q, k, v and the output gradient of every SDPA call, captured by wrapping F.scaled_dot_product_attention."""
    calls = []
    original = F.scaled_dot_product_attention

    def sdpa(q, k, v, *args, **kwargs):
        out = original(q, k, v, *args, **kwargs)
        entry = {"q": q.detach(), "k": k.detach(), "v": v.detach()}
        calls.append(entry)
        out.register_hook(lambda g, e=entry: e.update(g=g.detach()))
        return out

    F.scaled_dot_product_attention = sdpa
    try:
        F.cross_entropy(model(x), y).backward()
    finally:
        F.scaled_dot_product_attention = original
    return calls


def sdpa_grads(r, q, k, v, out):
    """The fused kernel's backward from (possibly dequantized) q, k, v, out and the exact logsumexp."""
    grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        r["g"], q, k, v, out, r["lse"], 0.0, False)
    return torch.cat([t.flatten() for t in grads])


def vit():
    """The small ViT with a random head (torchvision zero-initialises it, so no gradient would flow)."""
    model = build_model("vit_small", 100).train()
    nn.init.normal_(model.heads.head.weight, std=0.02)
    return model


def rel(a, b):
    return float((a - b).norm() / b.norm())


@torch.no_grad()
def study(name, records, grad_fn, settings, fewbit=None):
    exact = torch.cat([grad_fn(r, *r["inputs"]).flatten() for r in records]).detach()
    print(f"\n{name}: input-gradient relative error, {len(records)} calls")
    print(f"{'bits':>5}{'group':>7}{'nearest':>10}{'stochastic':>12}{'bias (4 draws)':>16}")
    gen = torch.Generator().manual_seed(0)
    for bits, group in settings:
        near = torch.cat([grad_fn(r, *[nearest(t.flatten(), bits, group).view_as(t) for t in r["inputs"]]).flatten()
                          for r in records])
        draws = []
        for _ in range(4):
            draws.append(torch.cat([
                grad_fn(r, *[stochastic(t.flatten(), bits, group, gen).view_as(t) for t in r["inputs"]]).flatten()
                for r in records]))
        mean = torch.stack(draws).mean(0)
        print(f"{bits:5d}{group:7d}{rel(near, exact):10.4f}{rel(draws[0], exact):12.4f}{rel(mean, exact):16.4f}")
    if fewbit is not None:
        err = rel(torch.cat([fewbit(r).flatten() for r in records]), exact)
        print(f"{'few-bit derivative code (4 bits, 15 bins)':<40}{err:8.4f}")


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    x, y = batches()
    settings = [(8, 32), (8, 64), (8, 128), (4, 16), (4, 32), (4, 64)]

    resnet = build_model("resnet18_cifar", 100).train()
    bns = capture(resnet, x, y, nn.BatchNorm2d)
    for r in bns:
        r["inputs"] = (r["x"],)
    study("CIFAR ResNet-18, BatchNorm2d inputs (batch 32)", bns, bn_grads, settings)

    lns = capture(vit(), x, y, nn.LayerNorm)
    for r in lns:
        r["inputs"] = (r["x"],)
    study("Small ViT, LayerNorm inputs", lns, ln_grads, settings)

    gelus = capture(vit(), x, y, nn.GELU)
    boundaries, levels = fewbit_tables("gelu_none")
    for r in gelus:
        r["inputs"] = (r["x"],)

    def fewbit(r):
        codes = ref.fewbit_encode(r["x"].flatten(), boundaries)
        return ref.fewbit_grad(r["g"].flatten(), codes, levels)

    study("Small ViT, GELU inputs", gelus, gelu_grads, settings, fewbit)

    calls = attention_records(vit(), x, y)
    for r in calls:
        out, r["lse"] = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(r["q"], r["k"], r["v"])
        r["inputs"] = (r["q"], r["k"], r["v"], out)
    study("Small ViT, attention q/k/v/out (exact logsumexp)", calls, sdpa_grads, settings)


if __name__ == "__main__":
    main()
