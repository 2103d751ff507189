"""How sure a top-1 is: its standard error, the spread over seeds, and when a difference is noise.

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
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

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
    values = [float(v) for v in values]
    if not values:
        raise ValueError("an estimate needs at least one top-1")
    mean = sum(values) / len(values)
    error = top1_stderr(mean, n_images)
    if len(values) > 1:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        error = max(sd, error)
    return Estimate(mean, error, int(n_images), len(values))


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
