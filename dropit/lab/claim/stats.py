"""Paired statistics of the claim study: per-arm spread, the paired difference to plain, its 95% interval, a verdict.

Pure arithmetic, no torch::

    s = describe([52.1, 51.4, 52.9])            # {"n": 3, "mean": 52.13, "std": 0.75, "values": [...]}
    d = paired_difference([51.0, 50.2, 52.0], [52.1, 51.4, 52.9])
    d["mean"], d["ci95_low"], d["ci95_high"], d["verdict"]   # -1.07, -1.86, -0.27, "lower by 1.07"

The arms of the study are paired by seed: seed k of every arm starts from the
same weights and sees the same batches, so the difference ``arm - plain`` per
seed removes most of the seed-to-seed spread that an unpaired comparison
(:mod:`dropit.lab.stats`, two standard errors) has to carry. Its mean gets a
Student-t interval with n - 1 degrees of freedom::

    mean ± t(0.975, n - 1) · sd / sqrt(n)

The t quantile comes from the exact closed form of Student's t distribution
function for integer degrees of freedom (Abramowitz & Stegun 26.7.3 and
26.7.4), inverted by bisection: no scipy, and ``torch.distributions.StudentT``
has no ``icdf``. The verdict is computed, not written: "within noise" when the
interval holds 0, else "lower by X" or "higher by X" (X the mean difference).
"""
from __future__ import annotations

import math
from typing import Sequence


def t_two_sided_mass(t: float, dof: int) -> float:
    """P(|T| <= t) for Student's t with integer ``dof`` >= 1 (A&S 26.7.3/26.7.4)."""
    if dof < 1 or int(dof) != dof:
        raise ValueError(f"degrees of freedom must be a positive integer, got {dof}")
    theta = math.atan(abs(t) / math.sqrt(dof))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if dof % 2 == 0:  # sin θ (1 + 1/2 c² + 1·3/(2·4) c⁴ + ... up to c^(dof-2))
        term, total = 1.0, 1.0
        for k in range(1, dof // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return s * total
    if dof == 1:
        return 2 * theta / math.pi
    # odd: 2/π (θ + sin θ cos θ (1 + 2/3 c² + 2·4/(3·5) c⁴ + ... up to c^(dof-3)))
    term, total = 1.0, 1.0
    for k in range(1, (dof - 1) // 2):
        term *= c2 * (2 * k) / (2 * k + 1)
        total += term
    return 2 / math.pi * (theta + s * math.cos(theta) * total)


def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with integer ``dof``: t(0.975, 4) = 2.776."""
    if not 0.5 < p < 1:
        raise ValueError(f"t_quantile takes 0.5 < p < 1, got {p}")
    mass = 2 * p - 1
    lo, hi = 0.0, 1.0
    while t_two_sided_mass(hi, dof) < mass:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_two_sided_mass(mid, dof) < mass:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def describe(values: Sequence[float]) -> dict:
    """``{"n", "mean", "std", "values"}``: the sample standard deviation (n - 1), None for one value."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("describe needs at least one value")
    n = len(vals)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "std": std, "values": vals}


def verdict(mean: float, low: float | None, high: float | None, *, digits: int = 2) -> str:
    """"within noise" when [low, high] holds 0, else "lower by X" / "higher by X"; "one seed: no interval" without one."""
    if low is None or high is None:
        return "one seed: no interval"
    if low <= 0.0 <= high:
        return "within noise"
    return f"{'lower' if mean < 0 else 'higher'} by {abs(mean):.{digits}f}"


def paired_difference(arm: Sequence[float], base: Sequence[float], *, level: float = 0.95) -> dict:
    """``arm - base`` seed by seed: the differences, their mean, the Student-t interval at ``level`` and the verdict."""
    if len(arm) != len(base):
        raise ValueError(f"paired values need one per seed on both sides, got {len(arm)} and {len(base)}")
    diffs = [float(a) - float(b) for a, b in zip(arm, base)]
    d = describe(diffs)
    low = high = None
    if d["n"] > 1:
        half = t_quantile(0.5 + level / 2, d["n"] - 1) * d["std"] / math.sqrt(d["n"])
        low, high = d["mean"] - half, d["mean"] + half
    return {"diffs": diffs, "n": d["n"], "mean": d["mean"], "std": d["std"],
            "ci95_low": low, "ci95_high": high, "verdict": verdict(d["mean"], low, high)}
