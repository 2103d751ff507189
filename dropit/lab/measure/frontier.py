"""The memory/speed frontier: DropIT, its lossy companions, activation checkpointing and the compiler's
activation memory budget, each against plain.

    from dropit.lab.measure import frontier
    rows = frontier.run(["resnet18-cifar", "vit_b_16"])     # the eager rows, about 15 minutes on two CPU cores
    rows = frontier.run(["tiny"], rounds=2)                 # seconds: a narrow ResNet
    rows = frontier.run(["tiny"], configs=frontier.COMPILED)  # the compiled rows (each compiles: minutes)

A configuration (:data:`CONFIGS`, a :class:`dropit.candidate.Candidate`) is a conversion of the model
(DropIT at γ = 0.9 leaves the lab's dense layers alone, the first layer and the
classifier: :func:`dropit.lab.models.catalog.default_dropit_exclude`; checkpointed
blocks) and, for the rows named ``"compiled ..."``, ``torch.compile`` (``fullgraph``)
through :func:`dropit.compile_budgeted` with a memory budget (``None``: the
compiler's default). :data:`EAGER` are the default rows, :data:`COMPILED` the
compiled ones; each row is measured against its ``baseline``, ``"plain"`` for the
eager rows and ``"compiled plain"`` for the compiled ones:

- ``kept`` (forward-kept): the resident growth, how much the process's
  resident memory grows over one training-mode forward, the graph alive (what
  ``benchmarks/memory.py`` measures; not the saved bytes the meter and the
  planner count), at the model's memory batch;
- ``peak``: the growth of the process's peak resident memory over one whole
  step (zero_grad, forward, loss, backward, SGD step with momentum), from just
  before it; the peak is reset through ``/proc/self/clear_refs`` first, and two
  warm-up steps have already compiled and created the optimizer's state, so this
  is what the step itself adds: kept tensors, weight gradients and backward transients;
- ``forward_ops``: the forward convolutions and matmuls one step runs (profiler
  counts of :data:`FORWARD_OPS`, backward kernels not included): the proof that a
  budget took effect, since what the compiled graph does not keep it recomputes in backward;
- ``time``: the median over rounds of the step time over the baseline step of the
  same round (and over the DropIT step, eager or compiled: ``time_vs_dropit``), all
  configurations interleaved in one process (:mod:`dropit.timing`), at the model's time batch. Each
  compiled model is an instance of its own subclass (:func:`own_class`) with a
  backend of its own, so dynamo cannot run one model's graph (and budget) for
  another; dynamo's recompile limit is raised for the rounds, since every model is
  one more graph of the same ``forward``.

Each memory row runs in a fresh Python process (:mod:`dropit.lab.measure.process`,
which also makes glibc give freed large tensors back to the system). Linux only (``/proc``).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from dropit.candidate import Candidate
from dropit.timing import interleave, summarize

from dropit.lab.io import write_json
from dropit.lab.measure.process import in_fresh_process
from dropit.lab.models.catalog import build_model, default_dropit_exclude, dropit_filter
from dropit.lab.train.runtime import peak_rss_bytes, reset_peak_rss, rss_bytes
from dropit.lab.units import MiB

GAMMA = 0.9
FORWARD_OPS = ("aten::convolution", "aten::mm", "aten::addmm", "aten::bmm",
               "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_efficient_attention",
               "aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_cudnn_attention")

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


def every_other_block(model: nn.Module) -> list[str]:
    return blocks_of(model)[::2]


def lab_filter(model: nn.Module) -> Callable[[nn.Module, str], bool]:
    """The lab's rule for the layers DropIT leaves dense: the first layer and the classifier."""
    return dropit_filter(default_dropit_exclude(model))


def _config(name: str, gamma: float | None = None, quantize: str | None = None, *, compiled: bool = False,
            **fields) -> Candidate:
    """A frontier row's candidate: compiled ones ``fullgraph`` and against compiled plain, eager against plain."""
    return Candidate(gamma, quantize, compiled=compiled, fullgraph=compiled, label=name,
                     baseline="compiled plain" if compiled else "plain",
                     module_filter=lab_filter if gamma is not None else None, **fields)


CONFIGS: dict[str, Candidate] = {c.name: c for c in (
    _config("plain"),
    _config("DropIT", GAMMA),
    _config("DropIT + int8", GAMMA, "int8"),
    _config("DropIT + int4", GAMMA, "int4"),
    _config("checkpoint every block", blocks_of=blocks_of, blocks_label="every block"),
    _config("checkpoint every other block + DropIT", GAMMA, blocks_of=every_other_block,
            blocks_label="every other block"),
    _config("checkpoint every other block + DropIT + int8", GAMMA, "int8", blocks_of=every_other_block,
            blocks_label="every other block"),
    _config("compiled plain", compiled=True, budget=1.0),  # the default budget, named
    _config("compiled budget 0.5", compiled=True, budget=0.5),
    _config("compiled budget 0.2", compiled=True, budget=0.2),
    _config("compiled budget 0.0", compiled=True, budget=0.0),
    _config("compiled DropIT", GAMMA, compiled=True),
    _config("compiled DropIT + int8", GAMMA, "int8", compiled=True),
    _config("compiled DropIT + int4", GAMMA, "int4", compiled=True),
    _config("compiled DropIT + budget 0.5", GAMMA, compiled=True, budget=0.5),
    _config("compiled DropIT + budget 0.2", GAMMA, compiled=True, budget=0.2),
    _config("compiled DropIT + int8 + budget 0.5", GAMMA, "int8", compiled=True, budget=0.5),
    _config("compiled checkpoint every block", compiled=True, blocks_of=blocks_of, blocks_label="every block"),
)}
EAGER = [name for name, c in CONFIGS.items() if not c.compiled]  # run()'s and the command line's default
COMPILED = [name for name, c in CONFIGS.items() if c.compiled]  # benchmarks/frontier.py --compiled


def own_class(model: nn.Module) -> nn.Module:
    """``model`` as the only instance of a subclass of its class (same name): a graph dynamo keys on the
    class cannot be another instance's."""
    cls = type(model)
    model.__class__ = type(cls.__name__, (cls,), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
    return model


def build(model_key: str, config: str) -> tuple[nn.Module, nn.Module, int, int, int]:
    """(the model, what a step calls: the model or its compiled form, image size, memory batch, time batch)."""
    name, size, memory_batch, time_batch = MODELS[model_key]
    torch.manual_seed(0)
    model = build_model(name, 100, image_size=size if name.startswith("vit") else None)
    c = CONFIGS[config]
    c.convert(model)
    model.train()
    stepped = c.compile(own_class(model)) if c.compiled else model
    return model, stepped, size, memory_batch, time_batch


def _step(model, opt, x, y, keep=None) -> None:
    opt.zero_grad(set_to_none=True)
    out = model(x)
    if keep is not None:
        keep()
    nn.functional.cross_entropy(out, y).backward()
    opt.step()


def forward_ops(model: nn.Module, opt, x, y) -> int:
    """Forward convolutions and matmuls one step runs (recomputed ones included)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        _step(model, opt, x, y)
    return sum(1 for e in prof.events() if e.name in FORWARD_OPS)


def measure_memory(model_key: str, config: str) -> dict:
    """In this process: forward-kept and whole-step peak growth of one step, then its forward ops
    (see the module docstring)."""
    torch.set_num_threads(2)
    model, stepped, size, batch, _ = build(model_key, config)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 100, (batch,))
    for _ in range(2):  # warm-up: compiles (compiled rows), then optimizer state, kernel and allocator paths
        _step(stepped, opt, x, y)
    opt.zero_grad(set_to_none=True)
    gc.collect()
    if not reset_peak_rss():
        raise RuntimeError("the frontier's peak needs Linux's /proc/self/clear_refs to reset the peak resident size")
    before = rss_bytes()
    kept: dict[str, int] = {}
    _step(stepped, opt, x, y, keep=lambda: kept.setdefault("bytes", rss_bytes() - before))
    peak = peak_rss_bytes() - before
    c = CONFIGS[config]
    return {"model": model_key, "config": config, "compiled": c.compiled, "budget": c.budget, "batch": batch,
            "kept_bytes": kept["bytes"], "peak_bytes": peak, "forward_ops": forward_ops(stepped, opt, x, y)}


def memory_row(model_key: str, config: str) -> dict:
    """:func:`measure_memory` in a fresh Python process (:mod:`dropit.lab.measure.process`)."""
    return in_fresh_process("dropit.lab.measure.frontier:measure_memory", model_key=model_key, config=config)


def measure_times(model_key: str, configs: list[str], rounds: int) -> dict[str, dict]:
    """Step time of each configuration over its baseline's in the same round: median and quartiles
    (:mod:`dropit.timing`, two warm-up rounds: the first compiles). ``configs`` holds every baseline it needs."""
    torch.set_num_threads(2)
    built = {c: build(model_key, c) for c in configs}
    _, _, size, _, batch = built[configs[0]]
    opts = {c: torch.optim.SGD(b[0].parameters(), lr=1e-3, momentum=0.9) for c, b in built.items()}
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 100, (batch,))
    steps = {c: (lambda c=c: _step(built[c][1], opts[c], x, y)) for c in configs}
    limit = contextlib.nullcontext()  # eager rows leave dynamo's settings alone
    if any(CONFIGS[c].compiled for c in configs):  # every compiled model is one more graph of the same forward
        limit = torch._dynamo.config.patch(recompile_limit=max(8, 2 * len(configs)))
    with limit:
        times = interleave(steps, rounds=rounds, warmup=2)
    out = {}
    for c in configs:
        t = summarize(times[c], times[CONFIGS[c].baseline])
        out[c] = {"step_s": t.step_s, "time_ratio": t.ratio, "time_q1": t.ratio_q1, "time_q3": t.ratio_q3,
                  "time_batch": batch}
        dropit_row = "compiled DropIT" if CONFIGS[c].compiled else "DropIT"
        if dropit_row in times:  # what the companions, checkpointing or a budget add to DropIT's own step
            out[c]["time_vs_dropit"] = summarize(times[c], times[dropit_row]).ratio
    return out


def with_baselines(configs: list[str]) -> list[str]:
    """``configs`` with the baselines they need, each baseline first; unknown names refused."""
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown frontier configurations {unknown}; choose among {', '.join(CONFIGS)}")
    return list(dict.fromkeys([*(CONFIGS[c].baseline for c in configs), *configs]))


def memory_rows(models: list[str], configs: list[str], memory_file=None, log=print) -> dict[tuple[str, str], dict]:
    """:func:`memory_row` of every (model, config), each a fresh process. With ``memory_file`` (JSON), rows found
    there are reused and each new row is added as soon as it is measured: a stopped run loses at most one row,
    and the memory rows can be taken apart from the timing (they do not need an idle machine)."""
    path = Path(memory_file) if memory_file else None
    saved = json.loads(path.read_text()) if path is not None and path.is_file() else []
    rows = {(r["model"], r["config"]): r for r in saved}
    for model_key in models:
        for c in configs:
            if (model_key, c) not in rows:
                rows[(model_key, c)] = memory_row(model_key, c)
                if path is not None:
                    write_json(path, list(rows.values()))
                if log:
                    r = rows[(model_key, c)]
                    log(f"{model_key:<16}{c:<46}{r['kept_bytes'] / MiB:9.1f}{'':7}{r['peak_bytes'] / MiB:9.1f}{'':7}"
                        f"{r['forward_ops']:6d}  (memory)")
    return rows


def run(models: list[str], *, configs: list[str] | None = None, rounds: int = 8, log=print,
        memory_file=None) -> list[dict]:
    """Rows of (model, config, compiled, budget, kept/peak bytes and ratios to the baseline, forward ops,
    time ratio); the baselines first per model. ``configs``: names in :data:`CONFIGS`, default :data:`EAGER`.
    ``memory_file``: see :func:`memory_rows`."""
    configs = with_baselines(list(configs or EAGER))
    memory = memory_rows(models, configs, memory_file, log)
    rows = []
    for model_key in models:
        timing = measure_times(model_key, configs, rounds)
        for c in configs:
            base = memory[(model_key, CONFIGS[c].baseline)]
            row = {**memory[(model_key, c)], **timing[c], "baseline": CONFIGS[c].baseline,
                   "kept_ratio": memory[(model_key, c)]["kept_bytes"] / base["kept_bytes"],
                   "peak_ratio": memory[(model_key, c)]["peak_bytes"] / base["peak_bytes"]}
            rows.append(row)
            if log:
                log(f"{model_key:<16}{c:<46}{row['kept_bytes'] / MiB:9.1f}{row['kept_ratio']:7.3f}"
                    f"{row['peak_bytes'] / MiB:9.1f}{row['peak_ratio']:7.3f}{row['forward_ops']:6d}"
                    f"{row['time_ratio']:8.3f}x{row.get('time_vs_dropit', float('nan')):8.3f}x")
    return rows


def load_or_run(path, models: str, configs: str | None = None, rounds: int = 8) -> list[dict]:
    """The rows in the JSON file at ``path`` if given (a benchmark's ``--json`` list, or the committed
    ``docs/data/frontier.json`` with its ``rows``), else :func:`run` of the comma-separated models/configs."""
    if path:
        with open(path) as f:
            doc = json.load(f)
        return doc["rows"] if isinstance(doc, dict) else doc
    return run(models.split(","), configs=configs.split(",") if configs else None, rounds=rounds, log=None)


def markdown(rows: list[dict]) -> str:
    """The frontier as a Markdown table; a compiled row's ratios are against compiled plain."""
    lines = ["| model | configuration | forward-kept MiB | vs plain | step peak MiB | vs plain "
             "| forward convs+matmuls per step | step time vs plain | vs DropIT |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        vs = f"{r['time_vs_dropit']:.3f}x" if "time_vs_dropit" in r else "-"
        lines.append(
            f"| {r['model']} (b{r['batch']}, time b{r['time_batch']}) | {r['config']} | {r['kept_bytes'] / MiB:.1f} | "
            f"{r['kept_ratio']:.3f} | {r['peak_bytes'] / MiB:.1f} | {r['peak_ratio']:.3f} | "
            f"{r.get('forward_ops', '-')} | "
            f"{r['time_ratio']:.3f}x ({r['time_q1']:.2f}-{r['time_q3']:.2f}) | {vs} |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18-cifar,vit_b_16", help=f"any of {', '.join(MODELS)}")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--compiled", action="store_true", help="the compiled rows (default: the eager ones)")
    p.add_argument("--configs", default=None, help=f"comma-separated, any of: {', '.join(CONFIGS)}; "
                                                   "each row's baseline is always measured")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--memory-json", default=None,
                   help="keep the memory rows here as they are measured, and reuse those already there")
    p.add_argument("--memory-only", action="store_true",
                   help="measure only the memory rows (into --memory-json); they need no idle machine, the times do")
    args = p.parse_args(argv)
    configs = args.configs.split(",") if args.configs else (COMPILED if args.compiled else EAGER)
    print(f"CPU, fp32, gamma={GAMMA}, 2 threads; memory rows each a fresh process; compiled rows fullgraph, "
          "against compiled plain")
    print(f"{'model':<16}{'configuration':<46}{'kept MiB':>9}{'ratio':>7}{'peak MiB':>9}{'ratio':>7}{'ops':>6}"
          f"{'time':>9}{'/DropIT':>9}")
    if args.memory_only:
        if not args.memory_json:
            p.error("--memory-only keeps its rows in --memory-json FILE; name one")
        memory_rows(args.models.split(","), with_baselines(configs), args.memory_json)
        print(f"memory rows in {args.memory_json}; the times: the same command without --memory-only")
        return None
    rows = run(args.models.split(","), configs=configs, rounds=args.rounds, memory_file=args.memory_json)
    if args.json:
        write_json(args.json, rows)
    print()
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
