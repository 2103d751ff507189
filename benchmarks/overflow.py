"""How often a record overflows its capacity on real activations, while training on real images.

    DROPIT_DATA=../shared/data python benchmarks/overflow.py [--steps 150 --gammas 0.5,0.8,0.9]

Trains CIFAR ResNet-18 and a small ViT (SGD, batch 32, the lab's CIFAR-100
augmentation) with ``to_dropit(model, gamma=...)`` defaults and watches every
record made: how many elements the strategy selected (``count``) against the
kept count (1 - gamma) n and the record's capacity. An overflow is a record
whose count exceeds its capacity (then the first elements that fit are kept,
see ``dropit.record``). Printed per model and gamma: records seen, overflows,
and count / kept count (min, median, max) with the largest count / capacity
among the records that have a margin (more than 2^15 elements), which says how
much of the safety margin real activations use.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dropit  # noqa: E402
from dropit.lab.data.datasets import CIFAR100, CifarTrainTransform, ensure_cifar100, mean_std  # noqa: E402
from dropit.lab.models.catalog import build_model  # noqa: E402
from dropit.record import observe  # noqa: E402
from dropit.strategies import num_kept  # noqa: E402


def watch(model: nn.Module, gamma: float, batches, steps: int) -> list[tuple[int, int, int]]:
    """(count, kept count, capacity) of every record made in `steps` training steps at rate gamma."""
    seen: list[tuple[int, int, int]] = []

    def on_record(dense: torch.Tensor, record) -> None:
        if record.count is not None:  # a sparse record (not a dense one at a low rate)
            seen.append((int(record.count), num_kept(record.layout.numel, gamma), record.layout.capacity))

    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    with observe(on_record):
        for step, (x, y) in zip(range(steps), batches):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return seen


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--gammas", default="0.5,0.8,0.9")
    p.add_argument("--models", default="resnet18_cifar,vit_tiny")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = os.environ.get("DROPIT_DATA")
    if not root:
        sys.exit("set DROPIT_DATA to the folder holding cifar-100-python/")
    data = CIFAR100(ensure_cifar100(Path(root)), "train", CifarTrainTransform(*mean_std("cifar100")))
    print(f"records watched over {args.steps} training steps, batch {args.batch}, real CIFAR-100 images, "
          f"default strategy ({dropit.DEFAULT_STRATEGY})")
    print(f"{'model':<16}{'gamma':>6}{'records':>9}{'overflows':>10}{'count/kept: min':>17}{'median':>8}{'max':>8}"
          f"{'max count/capacity':>20}")
    print("(max count/capacity over the records with a margin, i.e. of more than 2^15 elements)")
    for name in args.models.split(","):
        for gamma in (float(g) for g in args.gammas.split(",")):
            torch.manual_seed(0)
            model = dropit.to_dropit(build_model(name, 100, image_size=32), gamma=gamma)
            loader = torch.utils.data.DataLoader(data, batch_size=args.batch, shuffle=True, drop_last=True)
            seen = watch(model, gamma, loader, args.steps)
            ratios = [c / k for c, k, _ in seen]
            overflows = sum(c > cap for c, _, cap in seen)
            # tensors of at most 2^15 elements have an exact quantile and capacity = kept count
            worst = max((c / cap for c, k, cap in seen if cap > k), default=float("nan"))
            print(f"{name:<16}{gamma:>6}{len(seen):>9}{overflows:>10}{min(ratios):>17.4f}"
                  f"{statistics.median(ratios):>8.4f}{max(ratios):>8.4f}{worst:>20.4f}")


if __name__ == "__main__":
    main()
