"""Dropping strategies: which elements of a cached input DropIT keeps.

A strategy maps a flat tensor ``x`` (n,) and a dropping rate ``gamma`` in [0, 1)
to a boolean mask (n,) of the elements to keep. The kept values themselves are
always the input's own values at their own positions; only the choice differs.

- ``"mink"``    exact min-k, as in the paper: drop the floor(gamma * n) elements
                of smallest |x|. Large tensors take the top-k only among the
                candidates above a sampled lower bound (a few % more than k),
                not over all n: the same set, at a fraction of the cost.
- ``"sampled"`` (the default) approximate min-k in linear time: estimate
                the gamma-quantile of |x| from a fixed random sample of 2^15
                elements and keep what lies above it. No sort of the whole
                tensor, no RNG: the same input always gives the same selection.
- ``"random"``  keep each element with probability 1 - gamma, (1 - gamma) * n
                on average (ablation baseline; torch's global RNG, as dropout).

Ties: ``"sampled"`` drops elements tied with its threshold, except where the
threshold is the largest |x| (a constant tensor, kept whole rather than dropped
whole); it never keeps zeros. ``"mink"`` keeps exactly its count, breaking
ties arbitrarily.

Non-finite inputs: NaN and +-Inf are always kept by ``"mink"`` and
``"sampled"``, so a NaN reaches the weight gradient exactly as it would without
DropIT instead of being silently dropped.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F

Strategy = Callable[[torch.Tensor, float], torch.Tensor]

SAMPLE_SIZE = 1 << 15


@functools.lru_cache(maxsize=64)
def _sample_indices(n: int, device: torch.device) -> torch.Tensor:
    """SAMPLE_SIZE fixed pseudo-random positions in [0, n), the same for every call.

    Drawn once per (n, device) from a generator seeded with n, so selection is
    deterministic and the global RNG stream (dropout, augmentation) is untouched.
    A random rather than strided sample cannot alias with row, channel or plane
    sizes. Cached: 256 KiB per distinct size.
    """
    g = torch.Generator().manual_seed(n)
    idx = torch.randint(0, n, (SAMPLE_SIZE,), generator=g)
    return idx.sort().values.to(device)  # ascending: the gather walks memory forwards


def num_kept(n: int, gamma: float) -> int:
    """Elements kept at dropping rate gamma: n - floor(gamma * n), at least 1 if n > 0."""
    return n - math.floor(gamma * n)


def mink(x: torch.Tensor, gamma: float) -> torch.Tensor:
    n = x.numel()
    k = num_kept(n, gamma)
    mag = x.abs().nan_to_num_(nan=math.inf, posinf=math.inf)  # NaN ranks as the largest
    idx = _top_k_indices(mag, k, gamma)
    return torch.zeros(n, dtype=torch.bool, device=x.device).index_fill_(0, idx, True)


def _top_k_indices(mag: torch.Tensor, k: int, gamma: float) -> torch.Tensor:
    """Indices of the k largest of mag, without a top-k over all of it when it is large.

    A threshold a few standard errors below the sample's gamma-quantile leaves
    (with overwhelming probability) at least k candidates above it; the top-k
    of the candidates is then the exact top-k of mag. If the sample misled us
    (fewer than k candidates), fall back to the full top-k.
    """
    n = mag.numel()
    if n <= 4 * SAMPLE_SIZE or mag.is_meta:
        return mag.topk(k, sorted=False).indices
    sample = mag.index_select(0, _sample_indices(n, mag.device))
    slack = 6 * math.sqrt(gamma * (1 - gamma) / SAMPLE_SIZE) + 2 / SAMPLE_SIZE
    rank = math.floor(max(0.0, gamma - slack) * SAMPLE_SIZE)
    if rank == 0:
        return mag.topk(k, sorted=False).indices
    low = sample.kthvalue(rank).values
    candidates = (mag > low).nonzero().view(-1)
    if candidates.numel() < k:
        return mag.topk(k, sorted=False).indices
    return candidates[mag.index_select(0, candidates).topk(k, sorted=False).indices]


def sampled_threshold(x: torch.Tensor, gamma: float) -> torch.Tensor | None:
    """The estimated gamma-quantile of |x| (a 0-dim tensor, no host sync), or None to keep all.

    x is flat. Up to SAMPLE_SIZE elements the quantile is exact; above, it
    is the quantile of a fixed random sample of SAMPLE_SIZE elements. The
    relative error of the kept count is then about
    sqrt(gamma / ((1 - gamma) * SAMPLE_SIZE)), 1.7% at gamma = 0.9 (2^15 elements: a
    sample that fits in L2 cache, where kthvalue takes about 0.5 ms, not 10).
    """
    n = x.numel()
    sample = x if n <= SAMPLE_SIZE else x.index_select(0, _sample_indices(n, x.device))
    rank = math.floor(gamma * sample.numel())  # sample elements at or below the threshold
    if rank == 0:
        return None
    mag = sample.abs()
    thr = mag.kthvalue(rank).values
    # A threshold equal to the largest |x| (a constant tensor) would drop all:
    # step it towards zero so the ties are kept whole instead. Zero stays zero.
    return torch.where(thr == mag.max(), torch.nextafter(thr, thr.new_zeros(())), thr)


def sampled(x: torch.Tensor, gamma: float) -> torch.Tensor:
    thr = sampled_threshold(x, gamma)
    if thr is None:
        return torch.ones_like(x, dtype=torch.bool)
    return magnitude_above(x, thr)


def magnitude_above(x: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    """The mask not(|x| <= thr): |x| above a 0-dim threshold, and NaN (which compares false)."""
    if x.device.type == "cpu":
        # hardshrink (x where |x| > thr, else 0; NaN passes) then .bool(): two
        # passes on CPU that take a third of the time of abs + one comparison
        # writing a bool. .item() costs nothing here; on a GPU it would be a sync.
        return F.hardshrink(x, thr.item()).bool()
    return x.abs().le(thr).logical_not_()


def random(x: torch.Tensor, gamma: float) -> torch.Tensor:
    return torch.rand(x.shape, device=x.device) >= gamma


STRATEGIES: dict[str, Strategy] = {"mink": mink, "sampled": sampled, "random": random}
DEFAULT_STRATEGY = "sampled"  # the fast default; "mink" reproduces the paper exactly


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown DropIT strategy {name!r}; choose one of {sorted(STRATEGIES)}"
        ) from None


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
