"""Training-step time of DropIT against the plain model, measured interleaved in one process.

    python benchmarks/speed.py                    # CPU: CIFAR ResNet-18 (batch 32) and a small ViT
    python benchmarks/speed.py --compile          # also torch.compile'd plain and DropIT (fullgraph) rows
    python benchmarks/speed.py --quality          # also the selection-quality table
    python benchmarks/speed.py --device cuda --batch 128 --models resnet18 --autocast bf16 --compile --sync-check
    python benchmarks/speed.py --device cuda --batch 32 --models vit_b_16 --autocast bf16 --compile --sync-check
    python benchmarks/speed.py --quantize         # the default against default + int8 and + int4
    python benchmarks/speed.py --quantize --compile --strategies ''   # the same, eager and compiled

Each round runs one step of every configuration in turn (plain, the default
``to_dropit(model, gamma=...)``, each other strategy, and an exact global top-k
over each whole cached tensor, the published algorithm, as a reference), so
drifts in machine speed hit all of them alike. Printed: each configuration's
median step, and the median (and quartiles) over rounds of its step over the
plain step of the same round. A step is zero_grad + forward + cross-entropy +
backward + SGD step. ``--compile`` adds ``torch.compile(plain)`` and
``torch.compile(dropit, fullgraph=True)`` rows (compiled DropIT is also compared
with compiled plain); ``--sync-check`` runs every DropIT step on CUDA under
``torch.cuda.set_sync_debug_mode("error")``, so a host sync fails the run.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dropit  # noqa: E402
from dropit.budget import inductor_uses_channels_last  # noqa: E402
from dropit.strategies import DEFAULT_STRATEGY, STRATEGIES, Selection, Strategy, exact_capacity, num_kept  # noqa: E402


def cifar_resnet18(num_classes=100):
    m = torchvision.models.resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


def small_vit(num_classes=100):
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=4, num_layers=6, num_heads=6, hidden_dim=384, mlp_dim=1536, num_classes=num_classes
    )


def vit_b_16(num_classes=100):
    return torchvision.models.vit_b_16(num_classes=num_classes)


def global_top_k(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """The published selection: a top-k over the whole flattened tensor."""
    k = num_kept(x.numel(), gamma)
    idx = x.abs().topk(k, sorted=False).indices
    return torch.zeros(x.numel(), dtype=torch.bool, device=x.device).index_fill_(0, idx, True)


# in this process only, so to_dropit can name it
def register_global_topk() -> None:
    """Make the published selection a strategy of this process (by main, not at import: tests import this file)."""
    STRATEGIES.setdefault("global-topk", Strategy("global-topk", lambda x, g: Selection(mask=global_top_k(x, g)), exact_capacity))


def configurations(base: nn.Module, gamma: float, strategies, compiled: bool, quantize: bool = False):
    yield "plain", base
    default = dropit.to_dropit(copy.deepcopy(base), gamma=gamma)
    yield f"default ({DEFAULT_STRATEGY})", default
    levels = dropit.QUANTIZE_LEVELS if quantize else ()
    for level in levels:  # the lossy companions on top of the default
        yield f"default + {level}", dropit.to_dropit(copy.deepcopy(base), gamma=gamma, quantize=level)
    for strategy in () if quantize else strategies:
        if strategy != DEFAULT_STRATEGY:
            yield strategy, dropit.to_dropit(copy.deepcopy(base), strategy=strategy, gamma=gamma)
    if compiled:  # each model with a backend of its own: dynamo cannot run one instance's graph for another
        yield "plain, compiled", dropit.compile_budgeted(copy.deepcopy(base))
        if inductor_uses_channels_last(base):  # compile_budgeted traced it in channels_last: plain as traced before
            yield "plain NCHW, compiled", dropit.compile_budgeted(copy.deepcopy(base), channels_last=False)
        yield "default, compiled", dropit.compile_budgeted(default, fullgraph=True)
        for level in levels:
            model = dropit.to_dropit(copy.deepcopy(base), gamma=gamma, quantize=level)
            yield f"+ {level}, compiled", dropit.compile_budgeted(model, fullgraph=True)


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


def _quartiles(ratios):
    ratios = sorted(ratios)
    return statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3


def bench_model(name, base, x, y, gamma, rounds, device, strategies=("mink", "random", "global-topk"),
                compiled=False, autocast=None, sync_check=False, quantize=False):
    configs = dict(configurations(base.to(device), gamma, strategies, compiled, quantize))
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in configs.items()}
    times = {k: [] for k in configs}
    amp = dict(device_type=device.type, dtype=autocast, enabled=autocast is not None)
    for r in range(rounds + 2):
        for key, model in configs.items():
            checked = sync_check and device.type == "cuda" and not key.startswith("plain")
            sync(device)
            t0 = time.perf_counter()
            with _sync_debug("error") if checked else contextlib.nullcontext():
                opts[key].zero_grad(set_to_none=True)
                with torch.autocast(**amp):
                    loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opts[key].step()
            sync(device)
            if r >= 2:  # two warm-up rounds (the first compiles)
                times[key].append(time.perf_counter() - t0)
    print(f"\n{name}: batch {x.shape[0]}, {x.shape[-1]}x{x.shape[-1]}, gamma={gamma}, {rounds} interleaved rounds, "
          f"{torch.get_num_threads()} threads, {device} ({machine(device)})"
          + (f", {str(autocast).replace('torch.', '')} autocast" if autocast else "")
          + (", DropIT steps under sync debug mode 'error'" if sync_check and device.type == "cuda" else ""))
    default = f"default ({DEFAULT_STRATEGY})"
    print(f"{'configuration':<22}{'median step (ms)':>18}{'ratio to plain':>16}{'quartiles':>18}"
          + (f"{'ratio to default':>18}" if quantize else ""))
    rows = []
    for key, ts in times.items():
        # each round's step over the plain step of the same round: drifts in
        # machine speed between rounds cancel out
        reference = "plain, compiled" if key.endswith("compiled") else "plain"
        q1, median, q3 = _quartiles(t / p for t, p in zip(ts, times[reference]))
        rows.append({"configuration": key, "step_ms": statistics.median(ts) * 1e3, "ratio": median, "q1": q1, "q3": q3,
                     "reference": reference})
        label = f"{median:15.3f}x" if key != reference else f"{'1.000x':>16}"
        base_key = default if reference == "plain" else "default, compiled"
        extra = ""
        if quantize:
            rows[-1]["ratio_to_default"] = statistics.median(t / d for t, d in zip(ts, times[base_key]))
            extra = f"{rows[-1]['ratio_to_default']:17.3f}x"
        print(f"{key:<22}{statistics.median(ts) * 1e3:18.1f}{label}{f'{q1:.3f}-{q3:.3f}':>18}{extra}"
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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--quality", action="store_true")
    p.add_argument("--models", default="resnet18,vit", help="comma-separated: resnet18, vit, vit_b_16")
    p.add_argument("--strategies", default="mink,random,global-topk", help="besides the default; '' for none")
    p.add_argument("--compile", action="store_true", help="add torch.compile'd plain and DropIT rows")
    p.add_argument("--autocast", choices=["bf16", "fp16"], default=None)
    p.add_argument("--sync-check", action="store_true", help="CUDA: fail on any host sync in a DropIT step")
    p.add_argument("--quantize", action="store_true", help="rows: default, + int8, + int4 (instead of the strategies)")
    p.add_argument("--json", type=Path, default=None,
                   help="also write the timing rows here (docs/make_pages.py wrap NAME FILE puts them in docs/data)")
    args = p.parse_args(argv)
    register_global_topk()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    builders = {
        "resnet18": ("CIFAR ResNet-18", cifar_resnet18, 32),
        "vit": ("ViT (6 layers, dim 384, patch 4)", small_vit, 32),
        "vit_b_16": ("ViT-B/16", vit_b_16, 224),
    }
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[args.autocast]
    strategies = [s for s in args.strategies.split(",") if s]
    rows = []
    for key in args.models.split(","):
        title, build, size = builders[key]
        x = torch.randn(args.batch, 3, size, size, device=device)
        y = torch.randint(0, 100, (args.batch,), device=device)
        got = bench_model(title, build(), x, y, args.gamma, args.rounds, device, strategies, args.compile, autocast,
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
