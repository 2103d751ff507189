"""A short CIFAR-100 run of the plain model, exact min-k and the sampled strategy, same seed.

    DROPIT_DATA=../shared/data python benchmarks/accuracy.py [--epochs 3 --subset 2500 --val-subset 1000]

Same initial weights, data order and augmentation (the strategies use no RNG);
only the cached inputs of the converted layers differ (gamma = 0.9, first conv
and classifier dense). Prints top-1/top-5 on the test images and images/s.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dropit.lab.config import RunConfig  # noqa: E402
from dropit.lab.train import run  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--subset", type=int, default=2500)
    p.add_argument("--model", default="resnet_mini")
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--val-subset", type=int, default=1000, help="test images evaluated (10000: all)")
    args = p.parse_args(argv)
    root = os.environ.get("DROPIT_DATA")
    if not root:
        sys.exit("set DROPIT_DATA to the folder holding cifar-100-python/")
    common = dict(model=args.model, dataset="cifar100", data_dir=root, subset=args.subset, val_subset=args.val_subset,
                  epochs=args.epochs, batch_size=50, lr=0.05, schedule="cosine", weight_decay=5e-4, seed=0,
                  log_every=10_000, threads=2, checkpoint=False, cache_batch=50)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in [("plain", {}), ("mink", dict(dropit=True, dropit_strategy="mink")),
                            ("sampled", dict(dropit=True, dropit_strategy="sampled"))]:
            if extra:
                extra["dropit_gamma"] = args.gamma
            final = run(RunConfig(**common, **extra, out_dir=f"{tmp}/{name}"))["final"]
            rows.append((name, final))
    print(f"\nCIFAR-100, {args.model}, {args.subset} train images, {args.epochs} epochs, seed 0, gamma={args.gamma}, "
          f"{args.val_subset} test images")
    print(f"{'run':<10}{'top-1':>8}{'top-5':>8}{'cache MiB':>11}{'images/s':>10}")
    for name, f in rows:
        print(f"{name:<10}{f['top1']:8.2f}{f['top5']:8.2f}{f['cache_bytes'] / 2**20:11.1f}{f['images_per_s']:10.1f}")


if __name__ == "__main__":
    main()
