"""How sure a result is: a top-1's standard error, the spread over seeds, when a difference is
noise, and the claim study's paired differences with their Student-t intervals.

Pure arithmetic on percentages, no torch and no imports from the rest of the kit, so the
bench, the plots and the reproduce tables all draw on one rule::

    from dropit.lab import stats
    stats.top1_stderr(2.3, 1000)            # 0.474: a binomial standard error, in points
    e = stats.estimate([2.3], n_images=1000)          # one run: ± its binomial SE
    f = stats.estimate([2.1, 2.6, 2.2], n_images=1000)  # three seeds: ± their spread
    stats.within_noise(e, f)                # True: the difference is under Z_NOISE combined errors
    stats.compare(e, f)                     # "-0.07 ± 0.67 points, within noise at 1000 test images"

A top-1 measured on n test images is a proportion p: how many of n a model got right.
Even a fixed model, evaluated on another n images from the same source, would land
within about sqrt(p (1 - p) / n) of it (the binomial standard error). Where a
configuration was run with several seeds, the runs' own spread (the sample standard
deviation) is what the error bar shows: it includes the test-set noise and the
training's run-to-run variation, and is never taken smaller than the binomial error.

Two estimates are "within noise" when they differ by less than ``Z_NOISE`` times their
combined error sqrt(ea² + eb²): about a 95% band, so a difference inside it is not
evidence of a change.

Paired runs (the claim study)::

    s = describe([52.1, 51.4, 52.9])            # {"n": 3, "mean": 52.13, "std": 0.75, "values": [...]}
    d = paired_difference([51.0, 50.2, 52.0], [52.1, 51.4, 52.9])
    d["mean"], d["ci95_low"], d["ci95_high"], d["verdict"]   # -1.07, -1.86, -0.27, "lower by 1.07"

The arms of the study are paired by seed: seed k of every arm starts from the
same weights and sees the same batches, so the difference ``arm - plain`` per
seed removes most of the seed-to-seed spread that an unpaired comparison
(``within_noise`` above, two standard errors) has to carry. Its mean gets a
Student-t interval with n - 1 degrees of freedom::

    mean ± t(0.975, n - 1) · sd / sqrt(n)

A configuration against its reference over seeds, the one rule the bench's table, its
status lines, its sweep summary and the reproduction tables call::

    seed_difference({0: 8.20}, {0: 9.35}, n_images=2000)
    # -1.15 ± 0.89 points (one seed each, binomial SEs), within noise at 2000 test images
    seed_difference({0: 8.2, 1: 9.0, 2: 8.5}, {0: 9.35, 1: 9.5, 2: 9.9}, n_images=2000)
    # paired by seed over 3 seeds, Student-t 95%

Its inputs map each *distinct* seed to a run that finished its schedule: a rerun of a
seed or a stopped run is the caller's to leave out (:class:`dropit.lab.notebook.bench.RunBook`
does).

The t quantile comes from the exact closed form of Student's t distribution
function for integer degrees of freedom (Abramowitz & Stegun 26.7.3 and
26.7.4), inverted by bisection: no scipy, and ``torch.distributions.StudentT``
has no ``icdf``. The verdict is computed, not written: "within noise" when the
interval holds 0, else "lower by X" or "higher by X" (X the mean difference).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

Z_NOISE = 2.0  # differences under two combined standard errors are read as noise


def top1_stderr(top1_pct: float, n_images: int) -> float:
    """The binomial standard error of a top-1 (percent) measured on ``n_images``, in points."""
    if n_images is None or n_images <= 0:
        raise ValueError(f"the standard error needs the number of test images, got {n_images!r}")
    p = min(max(top1_pct / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / n_images)


@dataclass(frozen=True)
class Estimate:
    """A top-1 in percent with its error (points), the test images behind it and the runs averaged."""

    value: float
    error: float
    n_images: int
    seeds: int = 1

    @property
    def how(self) -> str:
        """What the error is: ``"binomial SE, 1000 test images"`` or ``"spread over 3 seeds"``."""
        if self.seeds > 1:
            return f"spread over {self.seeds} seeds, {self.n_images} test images"
        return f"binomial SE, {self.n_images} test images"

    def __str__(self) -> str:
        return f"{self.value:.2f} ± {self.error:.2f}"


def estimate(values: Sequence[float], *, n_images: int) -> Estimate:
    """The mean top-1 of runs of one configuration, with the spread over seeds (or the SE of one run)."""
    if not len(values):
        raise ValueError("an estimate needs at least one top-1")
    d = describe(values)
    error = top1_stderr(d["mean"], n_images)
    if d["std"] is not None:
        error = max(d["std"], error)
    return Estimate(d["mean"], error, int(n_images), d["n"])


def combined_error(a: Estimate, b: Estimate) -> float:
    return math.hypot(a.error, b.error)


def within_noise(a: Estimate, b: Estimate, *, z: float = Z_NOISE) -> bool:
    """Whether ``a`` and ``b`` differ by no more than ``z`` combined standard errors."""
    return abs(a.value - b.value) <= z * combined_error(a, b)


def noise_words(a: Estimate, b: Estimate) -> str:
    """``"within noise at 1000 test images"`` (the smaller test set when they differ)."""
    return f"within noise at {min(a.n_images, b.n_images)} test images"


def compare(a: Estimate, b: Estimate, *, z: float = Z_NOISE) -> str:
    """``a − b`` in points with its combined error, and the words "within noise at n test images" if so."""
    text = f"{a.value - b.value:+.2f} ± {combined_error(a, b):.2f} points"
    return f"{text}, {noise_words(a, b)}" if within_noise(a, b, z=z) else text


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


@dataclass(frozen=True)
class SeedDifference:
    """``arm − base`` in points over the seeds each has, and which test produced its error and interval.

    ``value`` the difference of the means (paired: the mean of the per-seed differences); ``error`` its standard
    error; ``low``/``high`` its 95% interval; ``seeds`` the seeds behind it (paired: the shared ones; unpaired:
    the smaller side); ``paired`` whether seed k of both sides was compared; ``test`` the words for the table.
    """

    value: float
    error: float
    low: float
    high: float
    seeds: int
    n_images: int
    paired: bool
    test: str

    @property
    def within_noise(self) -> bool:
        """Whether the 95% interval holds 0: the difference is not evidence of a change."""
        return self.low <= 0.0 <= self.high

    def __str__(self) -> str:
        text = f"{self.value:+.2f} ± {self.error:.2f} points ({self.test})"
        return f"{text}, within noise at {self.n_images} test images" if self.within_noise else text


def seed_difference(arm: Mapping[int, float], base: Mapping[int, float], *, n_images: int,
                    level: float = 0.95) -> SeedDifference:
    """The one rule for "this configuration − its reference" over seeds: the bench's table, its status lines,
    the sweep summary and the reproduction tables all call it.

    ``arm`` and ``base`` map each *distinct* seed to the top-1 of the run that finished its schedule with that
    seed (a rerun of a seed or a stopped run does not belong here: the caller leaves them out). Where two or
    more seeds are shared, the difference is paired by seed (:func:`paired_difference`, a Student-t interval);
    with one seed on each side, the two top-1s' binomial standard errors combine (``± Z_NOISE`` of them is the
    interval); otherwise the two sides' :func:`estimate` combine unpaired.
    """
    if not arm or not base:
        raise ValueError("a difference needs at least one seed on each side")
    shared = sorted(set(arm) & set(base))
    if len(shared) >= 2:
        d = paired_difference([arm[s] for s in shared], [base[s] for s in shared], level=level)
        se = d["std"] / math.sqrt(d["n"])
        return SeedDifference(d["mean"], se, d["ci95_low"], d["ci95_high"], d["n"], int(n_images), True,
                              f"paired by seed over {d['n']} seeds, Student-t {level:.0%}")
    a, b = estimate(list(arm.values()), n_images=n_images), estimate(list(base.values()), n_images=n_images)
    err = combined_error(a, b)
    if a.seeds == b.seeds == 1:
        test = "one seed each, binomial SEs"
    else:
        test = f"unpaired, {a.seeds} and {b.seeds} seeds"
    diff = a.value - b.value
    return SeedDifference(diff, err, diff - Z_NOISE * err, diff + Z_NOISE * err, min(a.seeds, b.seeds),
                          int(n_images), False, test)
