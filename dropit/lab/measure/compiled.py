"""The frontier's compiled rows: DropIT against the compiler's own activation memory budget.

    python benchmarks/frontier.py --compiled --json results/memory/frontier_compiled.json
    python benchmarks/frontier.py --compiled --models tiny --rounds 1 --configs "plain,budget 0.0,DropIT"  # the check

Every row is ``torch.compile``d (``fullgraph``) through :func:`dropit.compile_budgeted`:
plain at budgets 1.0 (the default), 0.5, 0.2 and 0.0; DropIT (gamma 0.9), + int8 and
+ int4; DropIT with a budget. Measured as in :mod:`dropit.lab.measure.frontier`:

- ``kept``: the growth of resident memory over one training forward, and ``peak``:
  over one whole step, each row in a fresh process (after warm-up steps that compile);
- ``time``: the median over interleaved rounds in one process of each step over the
  compiled plain step of the same round. Each model is an instance of its own
  subclass and has a backend of its own, so dynamo cannot run one model's graph
  (and budget) for another; the recompile limit is raised for the rounds, since
  every model is one more graph of the same ``forward``;
- ``forward_ops``: the forward convolutions and matmuls one step runs (profiler
  counts of ``aten::convolution``, ``aten::mm``, ``aten::addmm``, ``aten::bmm`` and
  fused attention, backward kernels not included): the proof that a budget took
  effect, since what it does not keep it recomputes in backward.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn

import dropit

from dropit.lab.io import write_json
from dropit.lab.measure import frontier
from dropit.lab.train.runtime import peak_rss_bytes, reset_peak_rss, rss_bytes

MiB = 2**20
FORWARD_OPS = ("aten::convolution", "aten::mm", "aten::addmm", "aten::bmm",
               "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_efficient_attention",
               "aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_cudnn_attention")

# name: (the eager frontier configuration it compiles, the compiler's budget or None for its default)
CONFIGS: dict[str, tuple[str, float | None]] = {
    "plain": ("plain", 1.0),  # the default budget
    "budget 0.5": ("plain", 0.5),
    "budget 0.2": ("plain", 0.2),
    "budget 0.0": ("plain", 0.0),
    "DropIT": ("DropIT", None),
    "DropIT + int8": ("DropIT + int8", None),
    "DropIT + int4": ("DropIT + int4", None),
    "DropIT + budget 0.5": ("DropIT", 0.5),
    "DropIT + budget 0.2": ("DropIT", 0.2),
    "DropIT + int8 + budget 0.5": ("DropIT + int8", 0.5),
}


def own_class(model: nn.Module) -> nn.Module:
    """``model`` as the only instance of a subclass of its class (same name): a graph dynamo keys on the
    class cannot be another instance's."""
    cls = type(model)
    model.__class__ = type(cls.__name__, (cls,), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
    return model


def build(model_key: str, config: str) -> tuple[nn.Module, nn.Module, int, int, int]:
    """(the model, its compiled form, image size, memory batch, time batch)."""
    eager_config, budget = CONFIGS[config]
    model, size, memory_batch, time_batch = frontier.build(model_key, eager_config)
    compiled = dropit.compile_budgeted(own_class(model), budget=budget, fullgraph=True)
    return model, compiled, size, memory_batch, time_batch


def step(model, opt, x, y, keep=None) -> None:
    opt.zero_grad(set_to_none=True)
    out = model(x)
    if keep is not None:
        keep()
    nn.functional.cross_entropy(out, y).backward()
    opt.step()


def forward_ops(compiled: nn.Module, opt, x, y) -> int:
    """Forward convolutions and matmuls one step runs (recomputed ones included)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step(compiled, opt, x, y)
    return sum(1 for e in prof.events() if e.name in FORWARD_OPS)


def measure_memory(model_key: str, config: str) -> dict:
    """In this process: forward-kept and whole-step peak growth of one compiled step, and the forward ops."""
    torch.set_num_threads(2)
    model, compiled, size, batch, _ = build(model_key, config)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 100, (batch,))
    for _ in range(2):  # compiles, then the optimizer state and allocator paths
        step(compiled, opt, x, y)
    ops = forward_ops(compiled, opt, x, y)
    opt.zero_grad(set_to_none=True)
    gc.collect()
    if not reset_peak_rss():
        raise RuntimeError("the frontier's peak needs Linux's /proc/self/clear_refs to reset the peak resident size")
    before = rss_bytes()
    kept: dict[str, int] = {}
    step(compiled, opt, x, y, keep=lambda: kept.setdefault("bytes", rss_bytes() - before))
    return {"model": model_key, "config": config, "batch": batch, "budget": CONFIGS[config][1],
            "kept_bytes": kept["bytes"], "peak_bytes": peak_rss_bytes() - before, "forward_ops": ops}


def memory_row(model_key: str, config: str) -> dict:
    """:func:`measure_memory` in a fresh Python process."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="2")
    cmd = [sys.executable, "-m", "dropit.lab.measure.compiled", "--child", model_key, config]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_times(model_key: str, configs: list[str], rounds: int) -> dict[str, dict]:
    """Step time of each compiled configuration over compiled plain's in the same round."""
    torch.set_num_threads(2)
    built = {c: build(model_key, c) for c in configs}
    _, _, size, _, batch = built[configs[0]]
    opts = {c: torch.optim.SGD(b[0].parameters(), lr=1e-3, momentum=0.9) for c, b in built.items()}
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 100, (batch,))
    times: dict[str, list[float]] = {c: [] for c in configs}
    with torch._dynamo.config.patch(recompile_limit=max(8, 2 * len(configs))):
        for r in range(rounds + 2):  # two warm-up rounds: the first compiles
            for c in configs:
                t0 = time.perf_counter()
                step(built[c][1], opts[c], x, y)
                if r >= 2:
                    times[c].append(time.perf_counter() - t0)
    out = {}
    for c in configs:
        q1, med, q3 = _ratio_quartiles(times[c], times["plain"])
        out[c] = {"step_s": statistics.median(times[c]), "time_ratio": med, "time_q1": q1, "time_q3": q3,
                  "time_batch": batch}
    return out


def _ratio_quartiles(times: list[float], base: list[float]) -> tuple[float, float, float]:
    """Quartiles of the per-round ratios (drifts of machine speed between rounds cancel)."""
    ratios = sorted(t / b for t, b in zip(times, base))
    return tuple(statistics.quantiles(ratios, n=4)) if len(ratios) > 1 else (ratios[0],) * 3


def run(models: list[str], *, configs: list[str] | None = None, rounds: int = 10, log=print) -> list[dict]:
    """Rows of (model, config, budget, kept/peak bytes and ratios to compiled plain, forward ops, time ratio)."""
    configs = configs or list(CONFIGS)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown compiled configurations {unknown}; choose among {', '.join(CONFIGS)}")
    configs = ["plain"] + [c for c in configs if c != "plain"]
    rows = []
    for model_key in models:
        memory = {c: memory_row(model_key, c) for c in configs}
        timing = measure_times(model_key, configs, rounds)
        plain = memory["plain"]
        for c in configs:
            row = {**memory[c], **timing[c], "compiled": True,
                   "kept_ratio": memory[c]["kept_bytes"] / plain["kept_bytes"],
                   "peak_ratio": memory[c]["peak_bytes"] / plain["peak_bytes"]}
            rows.append(row)
            if log:
                log(f"{model_key:<16}{c:<30}{row['kept_bytes'] / MiB:9.1f}{row['kept_ratio']:7.3f}"
                    f"{row['peak_bytes'] / MiB:9.1f}{row['peak_ratio']:7.3f}{row['forward_ops']:6d}"
                    f"{row['time_ratio']:8.3f}x ({row['time_q1']:.2f}-{row['time_q3']:.2f})")
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | compiled | forward-kept MiB | vs plain | step peak MiB | vs plain | forward convs+matmuls "
             "per step | step time vs compiled plain |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} (b{r['batch']}, time b{r['time_batch']}) | {r['config']} | "
                     f"{r['kept_bytes'] / MiB:.1f} | {r['kept_ratio']:.3f} | {r['peak_bytes'] / MiB:.1f} | "
                     f"{r['peak_ratio']:.3f} | {r['forward_ops']} | {r['time_ratio']:.3f}x "
                     f"({r['time_q1']:.2f}-{r['time_q3']:.2f}) |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=2, metavar=("MODEL", "CONFIG"))
    p.add_argument("--models", default="resnet18-cifar,vit_b_16", help=f"any of {', '.join(frontier.MODELS)}")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated; plain is always measured")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure_memory(*args.child)))
        return None
    print(f"CPU, fp32, compiled (fullgraph), gamma={frontier.GAMMA}, 2 threads; memory rows each a fresh process")
    print(f"{'model':<16}{'compiled':<30}{'kept MiB':>9}{'ratio':>7}{'peak MiB':>9}{'ratio':>7}{'ops':>6}{'time':>9}")
    rows = run(args.models.split(","), configs=args.configs.split(","), rounds=args.rounds)
    if args.json:
        write_json(args.json, rows)
    print()
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
