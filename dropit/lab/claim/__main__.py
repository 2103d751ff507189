"""The claim study's command line.

    python -m dropit.lab.claim --out results/claim [--protocol cnn|vit|gpu|all] [--arms plain,mink] [--seeds 3]
                               [--max-steps N] [--set key=value ...] [--commit]

Trains every missing run of the study into ``OUT/runs/`` (resuming an
interrupted one), then writes ``OUT/claim.json`` and prints its table.
``--set`` changes the recipe for every run (e.g. ``--set subset=5000``: then it
is no longer the protocol, and the runs say so in their config).
"""
from __future__ import annotations

import argparse
import sys

from dropit.lab.claim.protocols import CPU_PROTOCOLS, PROTOCOLS
from dropit.lab.claim.study import run_study
from dropit.lab.claim.summary import table_rows
from dropit.lab.download import DatasetMissing
from dropit.lab.train.config import ConfigError


def _fmt(x, digits=2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def print_table(summary: dict) -> None:
    print("top-1 (%) per arm; 'last 1/4': top-1 gained over the last quarter of the epochs (mean over seeds)")
    print(f"{'protocol':<9}{'arm':<14}{'seeds':>6}{'top-1':>8}{'± sd':>7}{'last 1/4':>9}{'vs plain':>10}{'95% CI':>18}  verdict")
    for r in table_rows(summary):
        ci = "" if r["ci95_low"] is None else f"[{r['ci95_low']:+.2f}, {r['ci95_high']:+.2f}]"
        diff = "" if r["diff"] is None else f"{r['diff']:+.2f}"
        print(f"{r['protocol']:<9}{r['arm']:<14}{r['seeds']:>6}{_fmt(r['mean']):>8}{_fmt(r['std']):>7}"
              f"{_fmt(r['last_quarter_gain']):>9}{diff:>10}{ci:>18}  {r['verdict']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dropit.lab.claim", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="study folder (runs/, work/, claim.json)")
    p.add_argument("--protocol", default="all", choices=(*PROTOCOLS, "all"),
                   help="all: the CPU protocols cnn and vit; gpu: CIFAR ResNet-18 for one GPU")
    p.add_argument("--arms", default=None, help="comma-separated arms (default: all of the protocol)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per arm (at least 3 for an interval)")
    p.add_argument("--max-steps", type=int, default=None, help="stop each run after N optimizer steps (pipeline checks)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change the recipe of every run (then it is not the protocol any more)")
    p.add_argument("--commit", action="store_true", help="git-commit each finished run's JSON and the summary")
    args = p.parse_args(argv)
    overrides = list(args.overrides) + ([f"max_steps={args.max_steps}"] if args.max_steps else [])
    arms = args.arms.split(",") if args.arms else None
    summary = None
    try:
        for proto in CPU_PROTOCOLS if args.protocol == "all" else (args.protocol,):
            summary = run_study(args.out, protocol=proto, arms=arms, seeds=args.seeds, overrides=overrides,
                                commit=args.commit)
    except (ConfigError, DatasetMissing, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_table(summary)
    print(f"wrote {args.out}/claim.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
