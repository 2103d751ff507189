"""Where compiled DropIT spends its extra time: torch.profiler self times per step against compiled plain.

    python benchmarks/profile_compiled.py                          # CIFAR ResNet-18 (batch 32) and the small ViT
    python benchmarks/profile_compiled.py --models vit --steps 5

Each configuration (plain, DropIT, DropIT + int8, DropIT + int4; all
``fullgraph`` compiled, each with a backend of its own so dynamo cannot reuse
another model's graph) runs two warm-up steps, then ``--steps`` profiled steps,
one of each configuration in turn.
Printed per model: each configuration's self CPU time per step by group
(inductor's fused kernels, convolutions and matmuls, DropIT's custom ops,
other aten ops), then the ops that account for the difference against plain.
Self times are shares of one process's time, so they hold up better than wall
ratios on a busy machine, but take them on a quiet one.
"""
from __future__ import annotations

import argparse
import copy
import sys
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dropit  # noqa: E402
from dropit.candidate import Candidate  # noqa: E402
from dropit.lab.models.catalog import build_model  # noqa: E402

GROUPS = (  # first match wins
    ("dropit custom ops", ("dropit::",)),
    ("conv / matmul", ("convolution", "mkldnn_conv", "addmm", "aten::mm", "aten::bmm", "linear", "_scaled_dot",
                       "flash_attention", "matmul")),
    ("inductor graphs (fused kernels)", ("CompiledFxGraph", "cpp_fused", "triton_", "Torch-Compiled Region")),
    ("selection / indexing", ("nonzero", "index", "scatter", "gather", "sort", "topk", "kthvalue", "where")),
)


def group_of(name: str) -> str:
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return "other aten" if name.startswith("aten::") else "other"


def candidates(gamma: float) -> list[Candidate]:
    """Plain, DropIT and DropIT + each quantize level, compiled as the README shows (channels_last, fullgraph)."""
    compiled = dict(compiled=True, fullgraph=True, channels_last=True)
    return [Candidate(label="plain", **compiled), Candidate(gamma, label="DropIT", **compiled)] + [
        Candidate(gamma, level, label=f"DropIT + {level}", **compiled) for level in dropit.QUANTIZE_LEVELS]


def profile(models: dict[str, nn.Module], x, y, steps: int) -> dict[str, dict[str, tuple[float, float]]]:
    """{config: {op: (self CPU microseconds, calls) per step}}, one profiled step of each model in turn per round,
    so that a change in machine load hits every configuration alike."""
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}

    def step(k):
        opts[k].zero_grad(set_to_none=True)
        nn.functional.cross_entropy(models[k](x), y).backward()
        opts[k].step()

    for _ in range(2):  # the first compiles
        for k in models:
            step(k)
    totals = {k: defaultdict(lambda: [0.0, 0]) for k in models}
    for _ in range(steps):
        for k in models:
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                step(k)
            for e in prof.key_averages():
                totals[k][e.key][0] += e.self_cpu_time_total / steps
                totals[k][e.key][1] += e.count / steps
    return {k: {op: tuple(v) for op, v in t.items()} for k, t in totals.items()}


def report(name: str, results: dict[str, dict[str, tuple[float, float]]], top: int) -> None:
    plain = results["plain"]
    print(f"\n{name}: self CPU ms per step by group")
    groups = sorted({group_of(k) for r in results.values() for k in r})
    print(f"{'configuration':<18}" + "".join(f"{g:>22}" for g in groups) + f"{'total':>10}")
    for config, r in results.items():
        by = defaultdict(float)
        for k, (us, _) in r.items():
            by[group_of(k)] += us
        total = sum(us for us, _ in r.values())
        print(f"{config:<18}" + "".join(f"{by[g] / 1e3:22.1f}" for g in groups) + f"{total / 1e3:10.1f}")
    for config, r in results.items():
        if config == "plain":
            continue
        deltas = [(r.get(k, (0, 0))[0] - plain.get(k, (0, 0))[0], r.get(k, (0, 0))[1] - plain.get(k, (0, 0))[1], k)
                  for k in set(r) | set(plain)]
        print(f"\n{name}, {config}: the ops adding most self time over plain (ms per step, calls per step)")
        for delta, calls, k in sorted(deltas, reverse=True)[:top]:
            print(f"  {delta / 1e3:+9.2f} ms {calls:+7.0f} calls  {k[:90]}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,vit")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--configs", default="plain,DropIT,DropIT + int8,DropIT + int4")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    wanted = args.configs.split(",")
    builders = {"resnet18": ("CIFAR ResNet-18", "resnet18_cifar"), "vit": ("ViT (6 layers, dim 384, patch 4)", "vit_small")}
    for key in args.models.split(","):
        title, name = builders[key]
        torch.manual_seed(0)
        x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 100, (args.batch,))
        base = build_model(name, 100)
        models = {c.name: c.build(copy.deepcopy(base)) for c in candidates(args.gamma) if c.name in wanted}
        report(f"{title} (batch {args.batch}, compiled, {args.steps} interleaved steps)",
               profile(models, x, y, args.steps), args.top)


if __name__ == "__main__":
    main()
