"""A quick CIFAR-100 run of the plain model against DropIT at gamma = 0.9: top-1 within a tolerance.

Same seed, same initial weights, same data order; only the cached inputs of the
converted layers differ (exact min-k, first conv and classifier dense). The
paper reports equal or slightly better accuracy with DropIT; at this scale
(resnet_mini, 2500 images, 3 epochs, 1000 test images, top-1 a few percent) we
can only check that DropIT does not break learning: both runs must learn
(top-1 at least 3x chance) and their top-1 differ by at most TOLERANCE points.
The binomial standard error of one top-1 near 6 % on 1000 images is ~0.75
points, so a difference of two runs has ~1.1 points of evaluation noise alone.
"""
import os
from pathlib import Path

import pytest

from dropit.lab.train.config import RunConfig
from dropit.lab.train.loop import run

TOLERANCE = 3.0  # percentage points of top-1
CHANCE = 1.0  # percent, 100 classes


@pytest.mark.slow
def test_dropit_matches_plain_top1_on_a_quick_cifar100_run(tmp_path):
    root = os.environ.get("DROPIT_DATA")
    if not root or not (Path(root) / "cifar-100-python").is_dir():
        pytest.skip("needs real CIFAR-100: set DROPIT_DATA to a folder with cifar-100-python/ (see ../shared/data)")
    common = dict(model="resnet_mini", dataset="cifar100", data_dir=root, subset=2500, val_subset=1000,
                  epochs=3, batch_size=50, lr=0.05, schedule="cosine", weight_decay=5e-4, seed=0,
                  log_every=10_000, threads=2, checkpoint=False, cache_batch=50)
    plain = run(RunConfig(**common, out_dir=str(tmp_path / "plain")))["final"]
    drop = run(RunConfig(**common, dropit=True, dropit_gamma=0.9, out_dir=str(tmp_path / "dropit")))["final"]
    print(f"\nquick CIFAR-100 top-1: plain {plain['top1']:.2f}  DropIT(0.9) {drop['top1']:.2f}  "
          f"(top-5 {plain['top5']:.2f} / {drop['top5']:.2f}; cache {plain['cache_bytes']} / {drop['cache_bytes']} bytes)")
    assert plain["top1"] >= 3 * CHANCE and drop["top1"] >= 3 * CHANCE
    assert abs(plain["top1"] - drop["top1"]) < TOLERANCE
