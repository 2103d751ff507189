"""The kit's one step timer: interleaved rounds, medians, and the one quartile rule.

    times = interleave({"plain": step_a, "DropIT": step_b}, rounds=8, warmup=2)   # {name: [seconds, ...]}
    t = summarize(times["DropIT"], times["plain"])    # Timing(step_s, noise_s, ratio, ratio_q1, ratio_q3)

Each round runs one step of every configuration in turn, so a drift of the
machine's speed between rounds hits all of them alike; the ratio of a step to
its baseline's is taken round by round, and its median over rounds is the
figure (the per-round ratio cancels the drift, the median ignores a stray
round). The warm-up rounds (the first compiles a compiled model) are not
counted. ``sync`` is called before and after each step (``torch.cuda.synchronize``
on a GPU), so a step's time is its device time too.

:func:`quartiles` is the only place quartiles are computed (the planner, the
frontier and the speed benchmark all report through it): the inclusive rule
(numpy's default, linear interpolation between order statistics at (n - 1) p),
which keeps the quartiles among the measured values; with few rounds a single
slow one moves them to its neighbour, not towards itself.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Hashable, Mapping, Sequence


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile) of ``values``, by the inclusive rule; one value: itself thrice."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("quartiles of no values")
    if len(ordered) == 1:
        return (ordered[0],) * 3
    q1, median, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return q1, median, q3


def ratios(times: Sequence[float], base: Sequence[float]) -> list[float]:
    """Each round's step over the baseline's step of the same round."""
    if len(times) != len(base):
        raise ValueError(f"{len(times)} timed rounds against {len(base)} of the baseline")
    return [t / b for t, b in zip(times, base)]


@dataclass(frozen=True)
class Timing:
    """One configuration's timed rounds, summarized against its baseline's."""

    step_s: float  # median step, seconds
    noise_s: float  # half the interquartile range of the steps
    ratio: float  # median over rounds of the step over the baseline's step of the same round
    ratio_q1: float  # quartiles of those per-round ratios
    ratio_q3: float
    rounds: int


def summarize(times: Sequence[float], base: Sequence[float]) -> Timing:
    """:class:`Timing` of ``times`` against ``base`` (the same rounds of the baseline; itself for the baseline)."""
    q1, median, q3 = quartiles(times)
    r1, ratio, r3 = quartiles(ratios(times, base))
    return Timing(step_s=median, noise_s=(q3 - q1) / 2, ratio=ratio, ratio_q1=r1, ratio_q3=r3, rounds=len(times))


def interleave(steps: Mapping[Hashable, Callable[[], object]], *, rounds: int, warmup: int = 1,
               sync: Callable[[], object] | None = None) -> dict[str, list[float]]:
    """Seconds of each step over ``rounds`` rounds (one call of every step per round, in order), after ``warmup``
    rounds that are run but not counted."""
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds must be at least 1 and warmup at least 0, got {rounds} and {warmup}")
    sync = sync or (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(warmup + rounds):
        for name, step in steps.items():
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def time_against(steps: Mapping[Hashable, Callable[[], object]], baseline, *, rounds: int,
                 warmup: int = 1, sync: Callable[[], object] | None = None) -> dict[str, Timing]:
    """:func:`interleave` the steps, then :func:`summarize` each against its baseline (a name among ``steps``, or
    a mapping from each name to its baseline's)."""
    times = interleave(steps, rounds=rounds, warmup=warmup, sync=sync)
    base_of = baseline.__getitem__ if isinstance(baseline, Mapping) else (lambda name: baseline)
    return {name: summarize(ts, times[base_of(name)]) for name, ts in times.items()}
