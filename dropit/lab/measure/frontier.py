"""The memory/speed frontier: DropIT, its lossy companions and activation checkpointing, each against plain.

    from dropit.lab.measure import frontier
    rows = frontier.run(["resnet18-cifar", "vit_b_16"])     # about 15 minutes on two CPU cores
    rows = frontier.run(["tiny"], rounds=2)                 # seconds: a narrow ResNet

For each model and configuration (:data:`CONFIGS`; DropIT at γ = 0.9 leaves the
lab's dense layers alone, the first layer and the classifier:
:func:`dropit.lab.models.catalog.default_dropit_exclude`):

- ``kept``: the growth of the process's resident memory over one
  training-mode forward, the graph alive (what ``benchmarks/memory.py``
  measures), at the model's memory batch;
- ``peak``: the growth of the process's peak resident memory over one whole
  step (zero_grad, forward, loss, backward, SGD step with momentum), from just
  before it; the peak is reset through ``/proc/self/clear_refs`` first, and a
  warm-up step has already created the optimizer's state, so this is what the
  step itself adds: kept tensors, weight gradients and backward transients;
- ``time``: the median over rounds of the step time over the plain step of the
  same round (and over the DropIT step: ``time_vs_dropit``), all
  configurations interleaved in one process, at the model's time batch.

Each memory row runs in a fresh Python process with ``MALLOC_MMAP_THRESHOLD_=65536``
so that freed large tensors go back to the system. Linux only (``/proc``).
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
from typing import Callable

import torch
import torch.nn as nn

import dropit

from dropit.lab.io import write_json
from dropit.lab.models.catalog import build_model, default_dropit_exclude, dropit_filter
from dropit.lab.train.runtime import peak_rss_bytes, reset_peak_rss, rss_bytes

MiB = 2**20
GAMMA = 0.9

# name: (lab model, image size, memory batch, time batch)
MODELS = {
    "resnet18-cifar": ("resnet18_cifar", 32, 128, 32),
    "vit_b_16": ("vit_b_16", 224, 8, 8),
    "tiny": ("resnet_mini", 32, 32, 16),
}


def blocks_of(model: nn.Module) -> list[str]:
    """Qualified names of the residual blocks: torchvision's BasicBlock/Bottleneck and ViT EncoderBlock."""
    from torchvision.models.resnet import BasicBlock, Bottleneck
    from torchvision.models.vision_transformer import EncoderBlock

    return [name for name, m in model.named_modules() if isinstance(m, (BasicBlock, Bottleneck, EncoderBlock))]


def _dropit(quantize: str | None = None, every_other_checkpointed: bool = False) -> Callable[[nn.Module], None]:
    def apply(model: nn.Module) -> None:
        if every_other_checkpointed:
            dropit.checkpoint_blocks(model, blocks_of(model)[::2])
        dense = dropit_filter(default_dropit_exclude(model))  # the lab's rule: first layer and classifier
        dropit.to_dropit(model, gamma=GAMMA, quantize=quantize, module_filter_fn=dense)  # skips checkpointed blocks
    return apply


CONFIGS: dict[str, Callable[[nn.Module], None]] = {
    "plain": lambda model: None,
    "DropIT": _dropit(),
    "DropIT + int8": _dropit("int8"),
    "DropIT + int4": _dropit("int4"),
    "checkpoint every block": lambda model: dropit.checkpoint_blocks(model, blocks_of(model)),
    "checkpoint every other block + DropIT": _dropit(None, True),
    "checkpoint every other block + DropIT + int8": _dropit("int8", True),
}


def build(model_key: str, config: str) -> tuple[nn.Module, int, int, int]:
    name, size, memory_batch, time_batch = MODELS[model_key]
    torch.manual_seed(0)
    model = build_model(name, 100, image_size=size if name.startswith("vit") else None)
    CONFIGS[config](model)
    return model.train(), size, memory_batch, time_batch


def _step(model, opt, x, y, keep=None):
    opt.zero_grad(set_to_none=True)
    out = model(x)
    if keep is not None:
        keep()
    nn.functional.cross_entropy(out, y).backward()
    opt.step()


def measure_memory(model_key: str, config: str) -> dict:
    """In this process: forward-kept and whole-step peak growth of one step (see the module docstring)."""
    torch.set_num_threads(2)
    model, size, batch, _ = build(model_key, config)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 100, (batch,))
    _step(model, opt, x, y)  # warm-up: optimizer state, kernel and allocator paths
    opt.zero_grad(set_to_none=True)
    gc.collect()
    if not reset_peak_rss():
        raise RuntimeError("the frontier's peak needs Linux's /proc/self/clear_refs to reset the peak resident size")
    before = rss_bytes()
    kept: dict[str, int] = {}
    _step(model, opt, x, y, keep=lambda: kept.setdefault("bytes", rss_bytes() - before))
    return {"model": model_key, "config": config, "batch": batch,
            "kept_bytes": kept["bytes"], "peak_bytes": peak_rss_bytes() - before}


def memory_row(model_key: str, config: str) -> dict:
    """:func:`measure_memory` in a fresh Python process."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="2")
    cmd = [sys.executable, "-m", "dropit.lab.measure.frontier", "--child", model_key, config]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_times(model_key: str, configs: list[str], rounds: int) -> dict[str, dict]:
    """Step time of each configuration over plain's in the same round: median and quartiles."""
    torch.set_num_threads(2)
    models = {c: build(model_key, c)[0] for c in configs}
    _, size, _, batch = build(model_key, "plain")
    opts = {c: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for c, m in models.items()}
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 100, (batch,))
    times: dict[str, list[float]] = {c: [] for c in configs}
    for r in range(rounds + 1):  # the first round warms up
        for c in configs:
            t0 = time.perf_counter()
            _step(models[c], opts[c], x, y)
            if r:
                times[c].append(time.perf_counter() - t0)
    out = {}
    for c in configs:
        q1, med, q3 = _median_ratio(times[c], times["plain"])
        out[c] = {"step_s": statistics.median(times[c]), "time_ratio": med, "time_q1": q1, "time_q3": q3,
                  "time_batch": batch}
        if "DropIT" in times:  # what the companions or checkpointing add to DropIT's own step
            out[c]["time_vs_dropit"] = _median_ratio(times[c], times["DropIT"])[1]
    return out


def _median_ratio(times, base) -> tuple[float, float, float]:
    """Quartiles of the per-round ratios: drifts of machine speed between rounds cancel."""
    ratios = sorted(t / b for t, b in zip(times, base))
    return tuple(statistics.quantiles(ratios, n=4)) if len(ratios) > 1 else (ratios[0],) * 3


def run(models: list[str], *, configs: list[str] | None = None, rounds: int = 8, log=print) -> list[dict]:
    """Rows of (model, config, kept/peak bytes and ratios to plain, time ratio); plain first per model."""
    configs = configs or list(CONFIGS)
    if configs[0] != "plain":
        configs = ["plain"] + [c for c in configs if c != "plain"]
    rows = []
    for model_key in models:
        memory = {c: memory_row(model_key, c) for c in configs}
        timing = measure_times(model_key, configs, rounds)
        plain = memory["plain"]
        for c in configs:
            row = {**memory[c], **timing[c],
                   "kept_ratio": memory[c]["kept_bytes"] / plain["kept_bytes"],
                   "peak_ratio": memory[c]["peak_bytes"] / plain["peak_bytes"]}
            rows.append(row)
            if log:
                log(f"{model_key:<16}{c:<46}{row['kept_bytes'] / MiB:9.1f}{row['kept_ratio']:7.3f}"
                    f"{row['peak_bytes'] / MiB:9.1f}{row['peak_ratio']:7.3f}{row['time_ratio']:8.3f}x"
                    f"{row.get('time_vs_dropit', float('nan')):8.3f}x")
    return rows


def load_or_run(path, models: str, configs: str | None = None, rounds: int = 8) -> list[dict]:
    """The rows in the JSON file at ``path`` if given, else :func:`run` of the comma-separated models/configs."""
    if path:
        with open(path) as f:
            return json.load(f)
    return run(models.split(","), configs=configs.split(",") if configs else None, rounds=rounds, log=None)


def markdown(rows: list[dict]) -> str:
    """The frontier as a Markdown table."""
    lines = ["| model | configuration | forward-kept MiB | vs plain | step peak MiB | vs plain | step time vs plain "
             "| vs DropIT |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        vs = f"{r['time_vs_dropit']:.3f}x" if "time_vs_dropit" in r else "-"
        lines.append(
            f"| {r['model']} (b{r['batch']}, time b{r['time_batch']}) | {r['config']} | {r['kept_bytes'] / MiB:.1f} | "
            f"{r['kept_ratio']:.3f} | {r['peak_bytes'] / MiB:.1f} | {r['peak_ratio']:.3f} | "
            f"{r['time_ratio']:.3f}x ({r['time_q1']:.2f}-{r['time_q3']:.2f}) | {vs} |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=2, metavar=("MODEL", "CONFIG"))
    p.add_argument("--models", default="resnet18-cifar,vit_b_16", help=f"any of {', '.join(MODELS)}")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, plain first")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure_memory(*args.child)))
        return None
    print(f"CPU, fp32, gamma={GAMMA}, 2 threads; memory rows each a fresh process")
    print(f"{'model':<16}{'configuration':<46}{'kept MiB':>9}{'ratio':>7}{'peak MiB':>9}{'ratio':>7}{'time':>9}"
          f"{'/DropIT':>9}")
    rows = run(args.models.split(","), configs=args.configs.split(","), rounds=args.rounds)
    if args.json:
        write_json(args.json, rows)
    print()
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
