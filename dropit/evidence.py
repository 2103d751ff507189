"""What the kit's accuracy study measured, by DropIT setting: the evidence the planner shows beside each candidate.

    study_top1_cost("mink", 0.8, None)   # StudyCost(protocol="cnn", mean=-0.98, ci95=(-1.21, -0.75), seeds=3)

The figures are the claim study's (docs/claim.md: CIFAR-100 from scratch, 13-16
epochs on two CPU cores, paired seeds, Student-t 95% intervals): the top-1
difference from plain, in points. They are copied here because the core reads
no files of the lab; a test checks each against the committed summary
(``docs/claim/claim.json``), so the table cannot drift from it. They hold for
those recipes, not for every model: a fine-tuning run, a longer schedule or
another architecture may cost less or more.
"""
from __future__ import annotations

from typing import NamedTuple


class StudyCost(NamedTuple):
    protocol: str  # the claim study's protocol: "cnn" (resnet_mini, 16 epochs), "vit" (vit_tiny_conv, 13 epochs)
    mean: float  # top-1 points, DropIT minus plain, over paired seeds
    ci95: tuple[float, float]
    seeds: int


# (strategy, gamma, quantize) -> measured costs, one per protocol; the arm of claim.json in the comment
STUDY_TOP1: dict[tuple[str, float, str | None], tuple[StudyCost, ...]] = {
    ("mink", 0.8, None): (StudyCost("cnn", -0.98, (-1.21, -0.75), 3),),  # cnn mink
    ("mink", 0.9, None): (StudyCost("vit", -2.47, (-4.40, -0.55), 3),),  # vit mink
    ("sampled", 0.9, None): (StudyCost("cnn", -2.30, (-3.67, -0.94), 3),),  # cnn default
    ("sampled", 0.9, "int8"): (StudyCost("cnn", -3.18, (-4.06, -2.30), 3),  # cnn default_int8
                               StudyCost("vit", -2.30, (-3.85, -0.75), 3)),  # vit default_int8
}


def study_top1_cost(strategy: str, gamma: float | None, quantize: str | None) -> tuple[StudyCost, ...]:
    """The study's measured top-1 costs of exactly this setting (empty where none was measured)."""
    if gamma is None:
        return ()
    return STUDY_TOP1.get((strategy, round(float(gamma), 3), quantize), ())


def describe(costs: tuple[StudyCost, ...]) -> str:
    """``"cnn -0.98 [-1.21, -0.75]"`` for each measured protocol, or ``"-"``."""
    if not costs:
        return "-"
    return "; ".join(f"{c.protocol} {c.mean:+.2f} [{c.ci95[0]:+.2f}, {c.ci95[1]:+.2f}]" for c in costs)
