"""How far DropIT's weight gradients are from dense autograd's, per strategy, value precision and quantize level.

    python benchmarks/gradients.py           # CIFAR ResNet-18, one batch of 32 random images

One forward/backward of the same batch through the plain model and through
converted copies; for each, the relative error ||g - g_dense|| / ||g_dense||
of all weight gradients together, and the cosine similarity. The kept values
stored in bf16 or fp16 (``value_dtype=``) add rounding on top of the drop: the
last column is their relative difference from the same strategy's gradient
with fp32 values. The second table adds the lossy companions
(``quantize="int8"``, ``"int4"``): their error against dense autograd, and
against DropIT alone at the same rate (what the quantization itself moves);
at gamma = 0 nothing is dropped, so that row is the quantization alone.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dropit  # noqa: E402
from dropit.lab.models.catalog import build_model  # noqa: E402


def weight_grads(model, x, y):
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    return torch.cat([p.grad.flatten() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1])


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    base = build_model("resnet18_cifar", 100)  # the catalog's, as every published table
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 100, (32,))
    dense = weight_grads(base, x, y)
    variants = [("mink", None), ("mink", torch.bfloat16), ("mink", torch.float16), ("sampled", None),
                ("sampled", torch.bfloat16), ("random", None)]
    print(f"Weight gradients of CIFAR ResNet-18 (batch 32) against dense autograd")
    print(f"{'strategy':<10}{'values':<8}{'gamma':>6}{'rel. error':>12}{'cosine':>9}{'vs fp32 values':>16}")
    for gamma in (0.5, 0.9):
        full = {}
        for strategy, vdt in variants:
            model = dropit.to_dropit(copy.deepcopy(base), strategy=strategy, gamma=gamma, value_dtype=vdt)
            torch.manual_seed(1)
            g = weight_grads(model, x, y)
            rel = float((g - dense).norm() / dense.norm())
            cos = float(torch.nn.functional.cosine_similarity(g.double(), dense.double(), dim=0))  # fp32 rounds above 1
            name = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[vdt]
            if vdt is None:
                full[strategy] = g
            vs = float((g - full[strategy]).norm() / full[strategy].norm())
            print(f"{strategy:<10}{name:<8}{gamma:6.1f}{rel:12.4f}{cos:9.4f}{vs:16.2e}")
    quantize_table(base, x, y, dense)


def quantize_table(base, x, y, dense):
    """The quantize levels on top of the default strategy."""
    print(f"\nWith the lossy companions (default strategy {dropit.DEFAULT_STRATEGY!r})")
    print(f"{'quantize':<10}{'gamma':>6}{'rel. error':>12}{'cosine':>9}{'vs DropIT alone':>17}")
    rows = []
    for gamma in (0.0, 0.5, 0.9):
        alone = None
        for level in (None, "int8", "int4"):
            g = weight_grads(dropit.to_dropit(copy.deepcopy(base), gamma=gamma, quantize=level), x, y)
            alone = g if level is None else alone
            rel = float((g - dense).norm() / dense.norm())
            cos = float(torch.nn.functional.cosine_similarity(g.double(), dense.double(), dim=0))  # fp32 rounds above 1
            vs = float((g - alone).norm() / alone.norm())
            rows.append({"quantize": level, "gamma": gamma, "rel_error": rel, "cosine": cos, "vs_dropit": vs})
            print(f"{str(level):<10}{gamma:6.1f}{rel:12.4f}{cos:9.4f}{vs:17.4f}")
    return rows


if __name__ == "__main__":
    main()
