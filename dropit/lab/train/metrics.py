"""Top-k accuracy in percent, running sums, and their reduction across DDP ranks.

Accuracies are kept as counts (correct, total) while accumulating so that
reducing across processes is an exact sum; percent comes last::

    meter = Meter()
    meter.update(loss=loss.item() * n, top1=c1, top5=c5, n=n)
    meter.all_reduce()            # no-op without torch.distributed
    meter.mean("loss"), meter.percent("top1")
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist


@torch.no_grad()
def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """Number of samples whose target is among the top-k logits, for each k (k capped at classes)."""
    kmax = min(max(ks), logits.shape[-1])
    pred = logits.topk(kmax, dim=-1).indices  # (B, kmax)
    hit = pred.eq(target.view(-1, 1))  # (B, kmax)
    return [int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


def accuracy(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[float]:
    """Top-k accuracy in percent for each k."""
    n = target.numel()
    return [100.0 * c / n if n else float("nan") for c in topk_correct(logits, target, ks)]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """Sum each value over all ranks (identity without a process group)."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_reduce_max(value: float, device: torch.device | str = "cpu") -> float:
    if not is_distributed():
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


class Meter:
    """Named running sums plus a sample count ``n``."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.n = 0

    def update(self, n: int, **sums: float) -> None:
        self.n += int(n)
        for k, v in sums.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)

    def mean(self, key: str) -> float:
        return self.sums.get(key, 0.0) / self.n if self.n else float("nan")

    def percent(self, key: str) -> float:
        return 100.0 * self.mean(key)

    def all_reduce(self, device: torch.device | str = "cpu") -> "Meter":
        keys = sorted(self.sums)
        reduced = all_reduce_sum([self.n] + [self.sums[k] for k in keys], device)
        self.n = int(round(reduced[0]))
        self.sums = dict(zip(keys, reduced[1:]))
        return self
