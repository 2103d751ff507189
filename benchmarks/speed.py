"""Training-step time of DropIT against the plain model, measured interleaved in one process.

    python benchmarks/speed.py                    # CPU: CIFAR ResNet-18 (batch 32) and a small ViT
    python benchmarks/speed.py --compile          # also torch.compile'd plain and DropIT (fullgraph) rows
    python benchmarks/speed.py --quality          # also the selection-quality table
    python benchmarks/speed.py --device cuda --batch 128 --models resnet18 --autocast bf16 --compile --sync-check
    python benchmarks/speed.py --device cuda --batch 32 --models vit_b_16 --autocast bf16 --compile --sync-check
    python benchmarks/speed.py --quantize         # the default against default + int8 and + int4
    python benchmarks/speed.py --quantize --compile --strategies ''   # the same, eager and compiled

A command line over the kit's one timer (:mod:`dropit.timing`) and its one
Candidate type (:mod:`dropit.candidate`), on the catalog's models
(:mod:`dropit.lab.models.catalog`: ``resnet18_cifar``, ``vit_small``,
``vit_b_16``). Each round runs one step of every configuration in turn (plain,
the default ``to_dropit(model, gamma=...)``, each other strategy, and the
published selection, an exact global top-k over each whole cached tensor, as a
reference), so drifts in machine speed hit all of them alike. Printed: each
configuration's median step, and the median (and quartiles) over rounds of its
step over the plain step of the same round. A step is zero_grad + forward +
cross-entropy + backward + SGD step.

``--compile`` adds compiled plain and the README's compile line,
``torch.compile(dropit.to_dropit(model.to(memory_format=torch.channels_last), gamma=0.9), fullgraph=True)``
(through :func:`dropit.compile_budgeted`, the same program with a backend of
its own so dynamo never runs one model's graph for another; compiled DropIT is
compared with compiled plain, both channels_last), and on CPU compiled plain
traced in the default layout; ``--sync-check`` runs every DropIT step on CUDA
under ``torch.cuda.set_sync_debug_mode("error")``, so a host sync fails the run.

Peers (:data:`PEERS`, e.g. ``global-topk``: the published code's selection,
:func:`dropit.lab.measure.peers.global_topk`) are this benchmark's own
conversions; the library's strategy table is left alone.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dropit  # noqa: E402
from dropit.budget import inductor_uses_channels_last  # noqa: E402
from dropit.candidate import Candidate  # noqa: E402
from dropit.lab.measure.peers import global_topk  # noqa: E402
from dropit.strategies import DEFAULT_STRATEGY, STRATEGIES, num_kept  # noqa: E402
from dropit.timing import interleave, summarize  # noqa: E402

# name: (title, the catalog's model, image size)
MODELS = {
    "resnet18": ("CIFAR ResNet-18", "resnet18_cifar", 32),
    "vit": ("ViT (6 layers, dim 384, patch 4)", "vit_small", 32),
    "vit_b_16": ("ViT-B/16", "vit_b_16", 224),
}
PEERS = {"global-topk": global_topk}  # this benchmark's own table: conversions f(model, gamma), not kit strategies


def candidates(gamma: float, strategies=(), compiled: bool = False, quantize: bool = False,
               nchw_too: bool = False) -> list[Candidate]:
    """The rows, in order: plain, the default, its quantize levels or the other strategies and peers, then
    (``compiled``) compiled plain, compiled plain traced NCHW (``nchw_too``), the README's compile line and its
    quantize levels compiled."""
    rows = [Candidate(label="plain"), Candidate(gamma, label=f"default ({DEFAULT_STRATEGY})")]
    levels = dropit.QUANTIZE_LEVELS if quantize else ()
    rows += [Candidate(gamma, level, label=f"default + {level}") for level in levels]  # the lossy companions
    for strategy in () if quantize else strategies:
        if strategy in PEERS:
            rows.append(Candidate(gamma, label=strategy, convert_with=PEERS[strategy]))
        elif strategy != DEFAULT_STRATEGY:
            rows.append(Candidate(gamma, strategy=strategy, label=strategy))
    if compiled:  # the README's layout: channels_last, then torch.compile (a backend of its own per model)
        rows.append(Candidate(compiled=True, channels_last=True, label="plain, compiled"))
        if nchw_too:  # compiled plain as traced before the README set the layout
            rows.append(Candidate(compiled=True, channels_last=False, label="plain NCHW, compiled"))
        rows.append(Candidate(gamma, compiled=True, fullgraph=True, channels_last=True, label="default, compiled"))
        rows += [Candidate(gamma, level, compiled=True, fullgraph=True, channels_last=True,
                           label=f"+ {level}, compiled") for level in levels]
    return rows


def configurations(base: nn.Module, gamma: float, strategies, compiled: bool, quantize: bool = False):
    """(name, the module a step calls) of each of :func:`candidates`, each built on its own copy of ``base``."""
    for c in candidates(gamma, strategies, compiled, quantize, nchw_too=compiled and inductor_uses_channels_last(base)):
        yield c.name, c.build(copy.deepcopy(base))


def reference_of(name: str) -> str:
    return "plain, compiled" if name.endswith("compiled") else "plain"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def machine(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "cpu"


def bench_model(name, base, x, y, gamma, rounds, device, strategies=("mink", "random", "global-topk"),
                compiled=False, autocast=None, sync_check=False, quantize=False):
    configs = dict(configurations(base.to(device), gamma, strategies, compiled, quantize))
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in configs.items()}
    amp = dict(device_type=device.type, dtype=autocast, enabled=autocast is not None)

    def step(key):
        checked = sync_check and device.type == "cuda" and not key.startswith("plain")
        with _sync_debug("error") if checked else contextlib.nullcontext():
            opts[key].zero_grad(set_to_none=True)
            with torch.autocast(**amp):
                loss = nn.functional.cross_entropy(configs[key](x), y)
            loss.backward()
            opts[key].step()

    # two warm-up rounds (the first compiles)
    times = interleave({k: (lambda k=k: step(k)) for k in configs}, rounds=rounds, warmup=2, sync=lambda: sync(device))
    print(f"\n{name}: batch {x.shape[0]}, {x.shape[-1]}x{x.shape[-1]}, gamma={gamma}, {rounds} interleaved rounds, "
          f"{torch.get_num_threads()} threads, {device} ({machine(device)})"
          + (f", {str(autocast).replace('torch.', '')} autocast" if autocast else "")
          + (", DropIT steps under sync debug mode 'error'" if sync_check and device.type == "cuda" else ""))
    default = f"default ({DEFAULT_STRATEGY})"
    print(f"{'configuration':<22}{'median step (ms)':>18}{'ratio to plain':>16}{'quartiles':>18}"
          + (f"{'ratio to default':>18}" if quantize else ""))
    rows = []
    for key, ts in times.items():
        # each round's step over the plain step of the same round: drifts in machine speed between rounds cancel
        reference = reference_of(key)
        t = summarize(ts, times[reference])
        to_default = {}
        if quantize:  # what the lossy companions add to DropIT's own step
            to_default["ratio_to_default"] = summarize(ts, times[default if reference == "plain" else "default, compiled"]).ratio
        rows.append({"configuration": key, "step_ms": t.step_s * 1e3, "ratio": t.ratio, "q1": t.ratio_q1,
                     "q3": t.ratio_q3, "reference": reference, **to_default})
        label = f"{t.ratio:15.3f}x" if key != reference else f"{'1.000x':>16}"
        extra = f"{to_default['ratio_to_default']:17.3f}x" if quantize else ""
        print(f"{key:<22}{t.step_s * 1e3:18.1f}{label}{f'{t.ratio_q1:.3f}-{t.ratio_q3:.3f}':>18}{extra}"
              + (f"  (vs {reference})" if reference != "plain" and key != reference else ""))
    return rows


@contextlib.contextmanager
def _sync_debug(mode):
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def activation_samples(n=1 << 20, seed=0):
    g = torch.Generator().manual_seed(seed)
    gauss = torch.randn(n, generator=g)
    rows = torch.randn(256, n // 256, generator=g) * torch.logspace(-2, 2, 256).unsqueeze(1)
    return {
        "gaussian": gauss,
        "post-relu": torch.randn(n, generator=g).clamp_min(0),
        "laplace": torch.distributions.Laplace(0.0, 1.0).sample((n,)),
        "student-t(2)": torch.distributions.StudentT(2.0).sample((n,)),
        "per-row scaled": rows.reshape(-1),
    }


def selection_quality(gamma=0.9):
    """Kept squared magnitude and kept count of each strategy against exact min-k."""
    torch.manual_seed(0)
    print(f"\nSelection quality at gamma={gamma} (1M elements): kept energy / exact min-k's, kept count / (1-gamma)n")
    approximate = ["sampled", "random"]
    print(f"{'activations':<16}" + "".join(f"{s + ' energy':>16}{s + ' count':>14}" for s in approximate))
    results = {}
    for name, x in activation_samples().items():
        exact = STRATEGIES["mink"](x, gamma)
        exact_energy = x[exact].square().sum()
        target = num_kept(x.numel(), gamma)
        row = f"{name:<16}"
        for s in approximate:
            keep = STRATEGIES[s](x, gamma)
            energy = float(x[keep].square().sum() / exact_energy)
            count = int(keep.sum()) / target
            results[(name, s)] = (energy, count)
            row += f"{energy:16.4f}{count:14.4f}"
        print(row)
    return results


def main(argv=None):
    from dropit.lab.models.catalog import build_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--quality", action="store_true")
    p.add_argument("--models", default="resnet18,vit", help="comma-separated: resnet18, vit, vit_b_16")
    p.add_argument("--strategies", default="mink,random,global-topk",
                   help=f"besides the default: of dropit.STRATEGIES or this benchmark's PEERS ({', '.join(PEERS)}); "
                        "'' for none")
    p.add_argument("--compile", action="store_true", help="add torch.compile'd plain and DropIT rows")
    p.add_argument("--autocast", choices=["bf16", "fp16"], default=None)
    p.add_argument("--sync-check", action="store_true", help="CUDA: fail on any host sync in a DropIT step")
    p.add_argument("--quantize", action="store_true", help="rows: default, + int8, + int4 (instead of the strategies)")
    p.add_argument("--json", type=Path, default=None,
                   help="also write the timing rows here (docs/make_pages.py wrap NAME FILE puts them in docs/data)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[args.autocast]
    strategies = [s for s in args.strategies.split(",") if s]
    rows = []
    for key in args.models.split(","):
        title, model, size = MODELS[key]
        x = torch.randn(args.batch, 3, size, size, device=device)
        y = torch.randint(0, 100, (args.batch,), device=device)
        got = bench_model(title, build_model(model, 100, image_size=size), x, y, args.gamma, args.rounds, device, strategies, args.compile, autocast,
                          args.sync_check, args.quantize)
        rows += [{"model": key, "batch": args.batch, "rounds": args.rounds, "threads": torch.get_num_threads(),
                  "machine": machine(device), **r} for r in got]
    if args.json is not None:
        from dropit.lab.io import write_json

        write_json(args.json, rows)
        print(f"wrote {args.json}")
    if args.quality:
        selection_quality(args.gamma)


if __name__ == "__main__":
    main()
