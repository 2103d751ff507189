"""dropit.plan on CIFAR ResNet-18 (batch 32): the fastest configuration that saves at most 0.3 of plain's bytes.

    python benchmarks/plan.py                          # eager candidates; the issue's target: within 10 minutes on 2 cores
    python benchmarks/plan.py --target 0.15 --rounds 7
    python benchmarks/plan.py --compile --gammas 0.9 --quantize none,int8   # compiled, at the compiler's budgets too

Prints the measured table, the pick, the wall time of the planning, and the
pick measured afresh on a new copy of the model (its saved bytes against the
target). Step times are only meaningful on a quiet machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dropit  # noqa: E402
from dropit.lab.models.catalog import build_model  # noqa: E402
from dropit.planner import saved_bytes  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", type=float, default=0.3, help="fraction of the plain model's saved bytes")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gammas", default="0.5,0.9")
    p.add_argument("--quantize", default="none,int8,int4")
    p.add_argument("--compile", action="store_true", help="compiled candidates, at the budgets too")
    p.add_argument("--budgets", default="none,0.5,0.2,0.0")
    p.add_argument("--strategies", default=dropit.DEFAULT_STRATEGY, help="comma-separated, of dropit.STRATEGIES")
    p.add_argument("--json", default=None, help="also write the table here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    none = lambda v: None if v == "none" else v  # noqa: E731
    torch.manual_seed(0)
    model = build_model("resnet18_cifar", 100)  # the catalog's CIFAR ResNet-18, as every published table
    x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 100, (args.batch,))
    loss_fn = lambda out: F.cross_entropy(out, y)  # noqa: E731
    t0 = time.perf_counter()
    planned = dropit.plan(
        model, x, loss_fn, target=args.target, rounds=args.rounds, compile=args.compile,
        gammas=[float(g) for g in args.gammas.split(",") if g], quantize=[none(q) for q in args.quantize.split(",")],
        budgets=[None if b == "none" else float(b) for b in args.budgets.split(",")],
        strategies=[s for s in args.strategies.split(",") if s],
        log=lambda line: print(line, flush=True))
    wall = time.perf_counter() - t0
    print()
    print(planned.table())
    print(f"\nplanned in {wall:.0f} s ({wall / 60:.1f} min) on {torch.get_num_threads()} threads")
    fresh = planned.apply(build_model("resnet18_cifar", 100))
    if args.compile:
        loss_fn(fresh(x)).backward()  # compiles
    again = saved_bytes(fresh, x)
    print(f"the pick measured afresh: {again / 2**20:.1f} MiB saved, target {planned.target_bytes / 2**20:.1f} MiB: "
          + ("meets it" if again <= planned.target_bytes else "MISSES it"))
    if args.json:
        from dropit.lab.io import write_json

        write_json(args.json, {"target": args.target, "target_bytes": planned.target_bytes, "pick": planned.pick.name,
                               "wall_s": wall, "fresh_saved_bytes": again,
                               "rows": [r.as_dict() for r in planned.rows]})
    return planned


if __name__ == "__main__":
    main()
