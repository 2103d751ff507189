"""Dropping strategies: which elements of a cached input DropIT keeps.

A :class:`Strategy` selects from a flat tensor ``x`` (n,) at dropping rate
``gamma`` in [0, 1), either by a magnitude threshold or by a boolean mask, and
says how many elements its records must be able to hold (its *capacity*, which
depends on n and gamma only, so records have static shapes). Calling it,
``STRATEGIES["sampled"](x, gamma)``, gives the keep mask. The kept values are
always the input's own values at their own positions; only the choice differs.

- ``"mink"``    exact min-k, as in the paper: drop the floor(gamma * n) elements
                of smallest |x|; capacity exactly the kept count. On CPU large
                tensors select only among the candidates above a sampled lower
                bound (a few % more than k), not over all n: the k-th largest
                magnitude among them is the exact threshold (when no other
                element ties with it; else a top-k among the candidates): the
                same set, at a fraction of the cost.
- ``"sampled"`` (the default) approximate min-k in linear time: estimate the
                gamma-quantile of |x| from a fixed sample of 2^15 elements (one
                in each of 2^15 equal strata, at hashed offsets) and keep what
                lies above it. No sort, no RNG, no host sync: the same input
                always gives the same selection.
- ``"random"``  keep each element with probability 1 - gamma, (1 - gamma) * n
                on average (ablation baseline; torch's global RNG, as dropout).

Capacity of the estimated strategies: the expected kept count plus
``MARGIN_SIGMAS`` (6) standard deviations of it: 10% more than (1 - gamma) * n
at gamma = 0.9 for ``"sampled"`` (whose sample fixes the kept fraction to
within sqrt(gamma (1 - gamma) / 2^15)), a fraction of a percent for
``"random"``. Selecting more than that is an overflow (see
:mod:`dropit.record`): the first elements, in memory order, that fit are kept.
It happens when more than 1 - gamma of a tensor is tied at its largest
magnitude (where any choice among the ties is an equally exact min-k), or with
a six-sigma sampling error (about 1e-9 per tensor).

Ties: ``"sampled"`` drops elements tied with its threshold, except where the
threshold is the largest |x| of the sample (a constant tensor: its ties are
kept, up to the capacity, rather than all dropped); it never keeps zeros.
``"mink"`` keeps exactly its count, breaking ties arbitrarily.

Non-finite inputs: NaN and +-Inf are always kept by ``"mink"`` and
``"sampled"``, so a NaN reaches the weight gradient exactly as it would without
DropIT instead of being silently dropped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from . import kernels
from .kernels import SAMPLE_SIZE, magnitude_keys, sample_rank

MARGIN_SIGMAS = 6.0


class Selection(NamedTuple):
    """Keep the elements whose magnitude key is above ``thr``, or where ``mask`` is True."""

    thr: torch.Tensor | int | None = None
    mask: torch.Tensor | None = None


@dataclass(frozen=True)
class Strategy:
    name: str
    select: Callable[[torch.Tensor, float], Selection]
    capacity: Callable[[int, float], int]  # most elements a record of n at rate gamma holds

    def __call__(self, x: torch.Tensor, gamma: float) -> torch.Tensor:
        """The (n,) bool keep mask of flat x (before any capacity limit)."""
        sel = self.select(x, gamma)
        return sel.mask.bool() if sel.mask is not None else magnitude_keys(x) > sel.thr


def num_kept(n: int, gamma: float) -> int:
    """Elements kept at dropping rate gamma: n - floor(gamma * n), at least 1 if n > 0."""
    return n - math.floor(gamma * n)


def _margin(n: int, sd: float) -> int:
    return math.ceil(MARGIN_SIGMAS * sd) + 1


def exact_capacity(n: int, gamma: float) -> int:
    return num_kept(n, gamma)


def sampled_capacity(n: int, gamma: float) -> int:
    if n <= SAMPLE_SIZE:  # the quantile is exact: never more than the kept count
        return num_kept(n, gamma)
    return min(n, num_kept(n, gamma) + _margin(n, n * math.sqrt(gamma * (1 - gamma) / SAMPLE_SIZE)))


def random_capacity(n: int, gamma: float) -> int:
    return min(n, num_kept(n, gamma) + _margin(n, math.sqrt(n * gamma * (1 - gamma))))


def select_sampled(x: torch.Tensor, gamma: float) -> Selection:
    return Selection(thr=kernels.threshold(x, sample_rank(x.numel(), gamma)))


def select_mink(x: torch.Tensor, gamma: float) -> Selection:
    n = x.numel()
    k = num_kept(n, gamma)
    if kernels.backend(x) == "c" and n > 4 * SAMPLE_SIZE:
        sel = _mink_as_threshold(x, k, gamma)
        if sel is not None:
            return sel
    keep = torch.zeros(n, dtype=torch.bool, device=x.device)
    return Selection(mask=keep.index_fill_(0, _top_k_indices(x, k, gamma), True))


def _candidate_rank(gamma: float) -> int:
    """A sample rank a few standard errors below gamma's: (almost surely) at least k candidates above it."""
    slack = 6 * math.sqrt(gamma * (1 - gamma) / SAMPLE_SIZE) + 2 / SAMPLE_SIZE
    return math.floor(max(0.0, gamma - slack) * SAMPLE_SIZE)


def _mink_as_threshold(x: torch.Tensor, k: int, gamma: float) -> Selection | None:
    """Exact min-k as a threshold (one pass to compress), or None to take the general path.

    The candidates above a sampled lower bound are compacted (one pass over x),
    the k-th largest key among them found by selection, and if exactly k
    elements reach it (no ties at the k-th largest), "key above it minus one"
    selects exactly the top k.
    """
    n = x.numel()
    rank = _candidate_rank(gamma)
    if rank == 0:
        return None
    low = kernels.threshold(x, rank)
    room = min(n, num_kept(n, rank / SAMPLE_SIZE) + _margin(n, n * math.sqrt(gamma * (1 - gamma) / SAMPLE_SIZE)))
    candidates, _, count = kernels.compress(x, room, thr=low)
    count = int(count)
    if not k <= count <= room:
        return None
    candidates = candidates[:count]
    kth = int(kernels.kth_key(candidates, count - k + 1))  # the k-th largest key
    if int((magnitude_keys(candidates) >= kth).sum()) != k:
        return None
    return Selection(thr=kth - 1)


def _top_k_indices(x: torch.Tensor, k: int, gamma: float) -> torch.Tensor:
    """Indices of the k largest magnitude keys of x, without a top-k over all of it when it is large.

    A threshold a few standard errors below the sample's gamma-quantile leaves
    (with overwhelming probability) at least k candidates above it; the top-k
    of the candidates is then the exact top-k of x. If the sample misled us
    (fewer than k candidates), fall back to the full top-k. On a GPU the full
    top-k is fast and needs no host sync, so it is taken directly.
    """
    keys = magnitude_keys(x)  # NaN ranks above Inf
    n = x.numel()
    rank = _candidate_rank(gamma)
    if n <= 4 * SAMPLE_SIZE or x.device.type != "cpu" or rank == 0:
        return keys.topk(k, sorted=False).indices
    low = kernels.threshold(x, rank)  # at most the sample's rank-th key
    candidates = (keys > low).nonzero().view(-1)
    if candidates.numel() < k:
        return keys.topk(k, sorted=False).indices
    return candidates[keys.index_select(0, candidates).topk(k, sorted=False).indices]


def select_random(x: torch.Tensor, gamma: float) -> Selection:
    return Selection(mask=torch.rand(x.shape, device=x.device) >= gamma)


STRATEGIES: dict[str, Strategy] = {
    "mink": Strategy("mink", select_mink, exact_capacity),
    "sampled": Strategy("sampled", select_sampled, sampled_capacity),
    "random": Strategy("random", select_random, random_capacity),
}
DEFAULT_STRATEGY = "sampled"  # the fast default; "mink" reproduces the paper exactly


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown DropIT strategy {name!r}; choose one of {sorted(STRATEGIES)}"
        ) from None


def threshold_magnitude(x: torch.Tensor, gamma: float) -> float | None:
    """The |x| at the ``"sampled"`` threshold of flat x (kept: above it), or None to keep all."""
    thr = int(kernels.threshold(x, sample_rank(x.numel(), gamma)))
    if thr < 0:
        return None
    key = torch.tensor([thr], dtype=torch.int64).to(magnitude_keys(x[:1]).dtype)
    return float(key.view(x.dtype).float())


def check_gamma(gamma: float, where: str = "gamma") -> float:
    """Validate a dropping rate: a real number in [0, 1)."""
    try:
        g = float(gamma)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a number in [0, 1), got {gamma!r}") from None
    if math.isnan(g) or not 0.0 <= g < 1.0:
        raise ValueError(
            f"{where} must be in [0, 1) (the fraction of elements dropped; 0 keeps all), got {gamma!r}"
        )
    return g
