"""Dropping strategies: which elements of a cached input DropIT keeps.

A strategy maps a flat tensor ``x`` (n,) and a dropping rate ``gamma`` in [0, 1)
to a boolean mask (n,) of the elements to keep. The kept values themselves are
always the input's own values at their own positions; only the choice differs.

- ``"mink"``    exact min-k, as in the paper: drop the floor(gamma * n) elements
                of smallest |x| (one global top-k, O(n log k)).
- ``"sampled"`` approximate min-k in linear time: estimate the gamma-quantile
                of |x| from a fixed low-discrepancy sample of 2^16 elements and
                keep what lies above it. No sort of the whole tensor, no RNG.
- ``"random"``  keep a uniformly random (1 - gamma) * n elements (ablation
                baseline; uses torch's global RNG like dropout does).

Non-finite inputs: NaN and +-Inf are always kept by every strategy except
``"random"``, so a NaN reaches the weight gradient exactly as it would without
DropIT instead of being silently dropped.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

Strategy = Callable[[torch.Tensor, float], torch.Tensor]

SAMPLE_SIZE = 1 << 16
# The golden ratio's fractional part times n gives a stride whose multiples
# modulo n spread evenly over [0, n) (a Weyl sequence), avoiding the aliasing
# a plain stride has with channel or row layouts.
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def num_kept(n: int, gamma: float) -> int:
    """Elements kept at dropping rate gamma: n - floor(gamma * n), at least 1 if n > 0."""
    return n - math.floor(gamma * n)


def mink(x: torch.Tensor, gamma: float) -> torch.Tensor:
    n = x.numel()
    k = num_kept(n, gamma)
    mask = torch.zeros(n, dtype=torch.bool, device=x.device)
    if k == 0:
        return mask
    mag = x.abs()
    mag = torch.where(torch.isnan(mag), torch.full_like(mag, math.inf), mag)
    idx = mag.topk(k, sorted=False).indices
    return mask.index_fill_(0, idx, True)


def _sample_indices(n: int, device: torch.device) -> torch.Tensor:
    stride = max(1, round(n * _GOLDEN))
    while math.gcd(stride, n) != 1:
        stride += 1
    return (torch.arange(SAMPLE_SIZE, device=device, dtype=torch.int64) * stride) % n


def sampled_threshold(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """The estimated gamma-quantile of |x| as a 0-dim tensor (no host sync)."""
    n = x.numel()
    if n <= SAMPLE_SIZE:
        sample = x.abs()
    else:
        sample = x.take(_sample_indices(n, x.device)).abs()
    m = sample.numel()
    rank = math.floor(gamma * m)  # elements at or below the threshold
    if rank == 0:
        return sample.new_full((), -1.0)  # below every |x|: keep all
    return sample.float().kthvalue(rank).values


def sampled(x: torch.Tensor, gamma: float) -> torch.Tensor:
    thr = sampled_threshold(x, gamma)
    # `not (|x| <= thr)` rather than `|x| > thr` so that NaN is kept.
    return x.abs().le(thr).logical_not_()


def random(x: torch.Tensor, gamma: float) -> torch.Tensor:
    n = x.numel()
    k = num_kept(n, gamma)
    mask = torch.zeros(n, dtype=torch.bool, device=x.device)
    return mask.index_fill_(0, torch.randperm(n, device=x.device)[:k], True)


STRATEGIES: dict[str, Strategy] = {"mink": mink, "sampled": sampled, "random": random}
DEFAULT_STRATEGY = "mink"


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
