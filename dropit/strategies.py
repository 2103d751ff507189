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
- ``"unbiased"`` threshold sampling (Wangni et al., NeurIPS 2018): every element
                with |x| >= tau is kept exactly; a smaller one is kept with
                probability |x| / tau and stands for sign(x) * tau, so the
                record's expectation is x and so is the weight gradient's. tau
                makes the expected count (1 - gamma) * n (solved on the same
                fixed sample as ``"sampled"``); the draws are hashed, not drawn
                from an RNG (:mod:`dropit.draws`).
- ``"rescaled"`` exact min-k, its kept values scaled by one factor per record,
                sum |x| / sum |kept|, so the record's total magnitude is the
                input's: the direction stays min-k's, the scale does not
                shrink (a control for ``"unbiased"``).

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
from .draws import current_key  # read when a record is made, also inside a compiled graph
from .kernels import SAMPLE_SIZE, magnitude_keys, sample_rank

MARGIN_SIGMAS = 6.0


class Selection(NamedTuple):
    """Keep the elements whose magnitude key is above ``thr``, or where ``mask`` is True; ``tau``: the
    ``"unbiased"`` threshold (0-dim, the input's dtype)."""

    thr: torch.Tensor | int | None = None
    mask: torch.Tensor | None = None
    tau: torch.Tensor | None = None


@dataclass(frozen=True)
class Strategy:
    name: str
    select: Callable[[torch.Tensor, float], Selection]
    capacity: Callable[[int, float], int]  # most elements a record of n at rate gamma holds
    # finish(values, flat, selection): the values to store, from the kept input values (any length; zeros
    # are padding and must stay zero). None: store the input's own values.
    finish: Callable[[torch.Tensor, torch.Tensor, Selection], torch.Tensor] | None = None
    draws: bool = False  # keeps a hashed random draw (dropit.draws): two steps on one batch keep different elements

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


def unbiased_capacity(n: int, gamma: float) -> int:
    """The expected count plus six standard deviations: of the draws (at most sqrt of the expected count)
    and, above the sample size, of tau's estimate (as ``"sampled"``'s)."""
    k = num_kept(n, gamma)
    sd = math.sqrt(k) + (n * math.sqrt(gamma * (1 - gamma) / SAMPLE_SIZE) if n > SAMPLE_SIZE else 0.0)
    return min(n, k + _margin(n, sd))


def unbiased_tau(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """tau (0-dim, float64) with sum_i min(1, |x_i| / tau) = (1 - gamma) * n, solved on the fixed sample.

    Sorted sample magnitudes s_0 <= ... <= s_{m-1}: if s_{j-1} < tau <= s_j, the expected count is
    (m - j) + (s_0 + ... + s_{j-1}) / tau, so tau = prefix_j / (budget - (m - j)); the j whose tau falls in
    its own interval is the solution (one exists: the count falls continuously as tau grows). Non-finite
    elements are kept exactly and sort last. No host sync: every size is static.
    """
    n = x.numel()
    mags = x if n <= SAMPLE_SIZE else x.index_select(0, kernels.reference._positions(n, x.device))
    s = mags.double().abs()
    s = torch.where(torch.isfinite(s), s, torch.inf).sort().values
    m = s.numel()
    if m == 0:
        return s.new_zeros(())
    budget = (1.0 - gamma) * m
    zero = s.new_zeros(1)
    prefix = torch.cat([zero, torch.where(torch.isfinite(s), s, 0.0).cumsum(0)])  # prefix[j] = s_0 + ... + s_{j-1}
    j = torch.arange(m + 1, device=x.device)
    denom = budget - (m - j)
    tau = torch.where(prefix > 0, prefix / denom.clamp_min(1e-300), 0.0)
    lower, upper = torch.cat([zero, s]), torch.cat([s, s.new_full((1,), torch.inf)])
    valid = (denom > 0) & (tau >= lower) & (tau <= upper) | ((prefix == 0) & (denom >= 0))
    pick = (valid * (j + 1)).argmax()  # the largest valid j (all give the same count)
    fallback = s[min(m - 1, max(0, m - math.ceil(budget)))]  # min-k's threshold: never reached in exact arithmetic
    tau = torch.where(valid.any(), tau[pick], fallback)
    return torch.where(torch.isfinite(tau), tau, 0.0)


def select_unbiased(x: torch.Tensor, gamma: float) -> Selection:
    tau = unbiased_tau(x, gamma).to(x.dtype)  # the stored +-tau is exactly the tau of the probabilities
    return Selection(mask=kernels.draw_mask(x, tau, current_key()), tau=tau)  # |x| >= tau: always kept


def finish_unbiased(values: torch.Tensor, flat: torch.Tensor, sel: Selection) -> torch.Tensor:
    tau = sel.tau.to(values.dtype)
    return torch.where((values.abs() < tau) & (values != 0), torch.copysign(tau, values), values)


def finish_rescaled(values: torch.Tensor, flat: torch.Tensor, sel: Selection) -> torch.Tensor:
    wide = torch.float64 if flat.dtype == torch.float64 else torch.float32  # 16-bit sums would overflow
    total = torch.linalg.vector_norm(flat, 1, dtype=wide)
    kept = torch.linalg.vector_norm(values, 1, dtype=wide)
    scale = total / kept
    scale = torch.where(torch.isfinite(scale) & (kept > 0), scale, 1.0)
    return (values.to(wide) * scale).to(values.dtype)


STRATEGIES: dict[str, Strategy] = {
    "mink": Strategy("mink", select_mink, exact_capacity),
    "sampled": Strategy("sampled", select_sampled, sampled_capacity),
    "random": Strategy("random", select_random, random_capacity),
    "unbiased": Strategy("unbiased", select_unbiased, unbiased_capacity, finish_unbiased, draws=True),
    "rescaled": Strategy("rescaled", select_mink, exact_capacity, finish_rescaled),
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
