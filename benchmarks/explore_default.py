"""Can the explore bench's default run tell plain and DropIT apart from a broken companion?

    DROPIT_DATA=../shared/data python benchmarks/explore_default.py            # both recipes below
    DROPIT_DATA=../shared/data python benchmarks/explore_default.py --recipes smoke

Trains resnet_mini on CIFAR-100 three ways per recipe: plain, DropIT (γ = 0.9, mink),
and a *broken* DropIT whose convolutions get wrong weight gradients of the right size
(each gradient's elements shuffled by a fixed permutation: what a companion that
scatters kept values to the wrong positions would do). It evaluates after every epoch
and prints each top-1 with its binomial standard error (:mod:`dropit.lab.stats`) and,
against the broken run, whether the difference is within noise. A recipe can tell them
apart when both plain and DropIT stand clear of the broken run by more than the noise.

Accuracy is what decides; the wall times printed are for orientation only (on a loaded
machine they are not a measurement).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dropit.lab import stats  # noqa: E402
from dropit.lab.io import write_json  # noqa: E402
from dropit.lab.train import loop  # noqa: E402
from dropit.lab.train.config import load_config  # noqa: E402

RECIPES = {"smoke": "params/smoke.yaml", "explore": "params/explore.yaml"}  # the explore notebook's default


class BreakGradients:
    """A callback that, from the first step on, shuffles every conv weight's gradient (fixed permutation)."""

    def __init__(self):
        self.done = False

    def on_step(self, state) -> None:
        if self.done or state.model is None:
            return
        gen = torch.Generator().manual_seed(0)
        for m in state.model.modules():
            if isinstance(m, torch.nn.Conv2d):
                perm = torch.randperm(m.weight.numel(), generator=gen)
                m.weight.register_hook(lambda g, perm=perm: g.flatten()[perm].view_as(g))
        self.done = True

    def on_epoch(self, state) -> None: ...

    def on_end(self, state) -> None: ...


def train(params: str, kind: str, out: Path) -> dict:
    extra = {"plain": ["dropit=false"], "dropit": ["dropit=true"], "broken": ["dropit=true"]}[kind]
    cfg = load_config(str(ROOT / params), [*extra, f"out_dir={out / kind}", "checkpoint=false", "log_every=100000"])
    t0 = time.monotonic()
    m = loop.run(cfg, callbacks=[BreakGradients()] if kind == "broken" else [])
    per_epoch = [(e["steps"], e["val_top1"]) for e in m["epochs"] if e.get("val_top1") is not None]
    return {"kind": kind, "val_images": m["final"]["val_images"], "per_epoch": per_epoch, "wall_s": time.monotonic() - t0}


def report(name: str, runs: list[dict]) -> list[str]:
    lines = [f"## {name}: top-1 ± binomial SE after each epoch (steps), against the broken run"]
    by = {r["kind"]: r for r in runs}
    n = by["plain"]["val_images"]
    for i, (steps, _) in enumerate(by["plain"]["per_epoch"]):
        est = {k: stats.estimate([r["per_epoch"][i][1]], n_images=r["val_images"]) for k, r in by.items()}
        cells = [f"{k} {est[k]}" for k in ("plain", "dropit", "broken")]
        apart = [k for k in ("plain", "dropit") if not stats.within_noise(est[k], est["broken"])]
        verdict = "both clear of broken" if len(apart) == 2 else f"within noise of broken: {', '.join(k for k in ('plain', 'dropit') if k not in apart)}"
        lines.append(f"{steps:>4} steps, {n} test images: " + "; ".join(cells) + f" -> {verdict}"
                     + f"; plain vs dropit {stats.compare(est['dropit'], est['plain'])}")
    lines.append("wall s (loaded machine, orientation only): " + ", ".join(f"{r['kind']} {r['wall_s']:.0f}" for r in runs))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--json", default=None, help="also write the raw results here")
    args = ap.parse_args()
    if not os.environ.get("DROPIT_DATA"):
        sys.exit("set DROPIT_DATA to the folder holding cifar-100-python/")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes.split(","):
            runs = [train(RECIPES[name], kind, Path(tmp) / name) for kind in ("plain", "dropit", "broken")]
            results[name] = runs
            print("\n".join(report(name, runs)), flush=True)
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
