"""Quantized records: what the lossy companions keep instead of a dense saved tensor.

After DropIT the bytes kept for backward are other ops' saved inputs
(BatchNorm, LayerNorm, RMSNorm, GELU, SiLU, attention). With
``to_dropit(model, quantize="int8")`` those ops keep them quantized:

- ``"int8"``: every such input as 8-bit codes with one fp32 scale per group of
  ``GROUP_SIZE[8]`` consecutive elements (absmax scaling, nearest rounding);
- ``"int4"``: norms and attention as 4-bit codes, scale per ``GROUP_SIZE[4]``;
  GELU and SiLU as a 4-bit *derivative code* ("few-bit backward", Novikov et
  al., arXiv 2202.00441): the bin of x among 14 boundaries, the backward
  multiplying by that bin's derivative, no scale at all.

These are **approximate**: the forward output is exact, the backward runs from
the dequantized input (or the binned derivative). See
``benchmarks/quant_choices.py`` for how the group sizes and the rounding were
chosen, and ``benchmarks/gradients.py`` for the gradient error they add.

Non-finite inputs: a NaN or +-Inf element is stored with a marker code and
comes back as NaN, so it still reaches the gradients (where PyTorch's own
backward of these ops gives NaN too).

A :class:`QRecord` is made of plain tensors (``.saved``, for
``ctx.save_for_backward``) and a static :class:`QLayout`; every size follows
from the input's shape alone, so ``torch.compile`` traces it with static
shapes. Records are announced to the memory meter (:func:`dropit.record.notify`)
with the dense tensor they stand for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from . import quant_ops
from .record import from_memory_order, memory_order, notify

LEVELS = ("int8", "int4")
GROUP_SIZE = {8: 64, 4: 32}  # elements per scale; chosen in benchmarks/quant_choices.py
FEWBIT_FUNCTIONS = ("gelu_none", "gelu_tanh", "silu")


def check_quantize(level, where: str = "quantize") -> str | None:
    """Validate a quantize level: None or one of :data:`LEVELS`."""
    if level is None or (isinstance(level, str) and level in LEVELS):
        return level
    raise ValueError(
        f"{where} must be None (keep dense) or one of {', '.join(repr(v) for v in LEVELS)}, got {level!r}"
    )


def bits_of(level: str) -> int:
    return {"int8": 8, "int4": 4}[level]


@dataclass(frozen=True)
class QLayout:
    """What dequantizing needs besides the tensors."""

    kind: str  # "int8" | "int4" | "fewbit4"
    shape: torch.Size
    dtype: torch.dtype
    permutation: tuple[int, ...] | None  # memory order of the flattened elements
    numel: int
    group: int  # elements per scale (0 for "fewbit4")

    @property
    def bits(self) -> int:
        return 8 if self.kind == "int8" else 4


class QRecord(NamedTuple):
    codes: torch.Tensor  # int8 (n,), or uint8 ((n + 1) // 2,) packed nibbles
    scales: torch.Tensor | None  # fp32 (groups,); None for "fewbit4"
    layout: QLayout

    @property
    def saved(self) -> tuple[torch.Tensor, ...]:
        """The tensors backward needs: what goes through ``ctx.save_for_backward``."""
        return (self.codes,) if self.scales is None else (self.codes, self.scales)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.saved)

    @classmethod
    def from_saved(cls, saved, layout: QLayout) -> "QRecord":
        return cls(saved[0], saved[1] if len(saved) > 1 else None, layout)


def quantize(x: torch.Tensor, bits: int) -> QRecord:
    """x as per-group integer codes, in its memory order (channels_last is not copied)."""
    flat, perm = memory_order(x)
    group = GROUP_SIZE[bits]
    codes, scales = quant_ops.quantize(flat, bits, group)
    record = QRecord(codes, scales, QLayout(f"int{bits}", x.shape, x.dtype, perm, flat.numel(), group))
    notify(x, record)
    return record


def dequantize(record: QRecord) -> torch.Tensor:
    """The dense tensor of the record's shape, dtype and memory format."""
    layout = record.layout
    flat = quant_ops.dequantize(record.codes, record.scales, layout.bits, layout.group, layout.numel, layout.dtype)
    return from_memory_order(flat, layout.shape, layout.permutation)


def encode_derivative(x: torch.Tensor, function: str) -> QRecord:
    """The 4-bit bin of each element for ``function``'s derivative table (see :func:`fewbit_tables`)."""
    flat, perm = memory_order(x)
    boundaries, _ = fewbit_tables(function, x.device)
    codes = quant_ops.fewbit_encode(flat, boundaries)
    record = QRecord(codes, None, QLayout("fewbit4", x.shape, x.dtype, perm, flat.numel(), 0))
    notify(x, record)
    return record


def derivative_grad(grad: torch.Tensor, record: QRecord, function: str) -> torch.Tensor:
    """grad * (the binned derivative), in grad's shape; grad is laid out like the encoded input."""
    layout = record.layout
    _, levels = fewbit_tables(function, grad.device)
    perm = layout.permutation
    g = (grad if perm is None else grad.permute(perm)).contiguous().view(-1)  # the codes' order
    return from_memory_order(quant_ops.fewbit_grad(g, record.codes, levels), layout.shape, perm)


FEWBIT_BINS = 15  # derivative levels; code 15 is the non-finite marker
_GRID = (-8.0, 8.0, 401)  # where the tables are fitted; outside, the end bins hold
_WEIGHT_STD = 2.0  # fit weight: a normal density of this width (pre-activations are about unit scale)


def _derivative(function: str, x: torch.Tensor) -> torch.Tensor:
    """d/dx of the activation, in closed form (tables may be built inside an autograd.Function)."""
    if function == "silu":
        s = torch.sigmoid(x)
        return s * (1 + x * (1 - s))
    if function == "gelu_tanh":
        c, a = math.sqrt(2 / math.pi), 0.044715
        t = torch.tanh(c * (x + a * x**3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * a * x * x)
    return 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _fit(function: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal piecewise-constant fit of the derivative: weighted least squares, 15 intervals, by
    dynamic programming over a fine grid (the segmentation Novikov et al. solve for their codes)."""
    if function not in FEWBIT_FUNCTIONS:
        raise ValueError(f"no derivative table for {function!r}; choose one of {', '.join(FEWBIT_FUNCTIONS)}")
    lo, hi, n = _GRID
    x = torch.linspace(lo, hi, n, dtype=torch.float64)
    d = _derivative(function, x)
    w = torch.exp(-0.5 * (x / _WEIGHT_STD) ** 2)
    zero = torch.zeros(1, dtype=torch.float64)
    W, S, Q = (torch.cat([zero, t.cumsum(0)]) for t in (w, w * d, w * d * d))
    j, i = torch.arange(n + 1).view(-1, 1), torch.arange(n + 1).view(1, -1)
    cost = Q[j] - Q[i] - (S[j] - S[i]) ** 2 / (W[j] - W[i]).clamp_min(1e-300)  # cost[j, i]: segment [i, j)
    cost = torch.where(j > i, cost, torch.inf)
    best = cost[:, 0]  # best[j]: cost of grid[:j] in one segment
    starts = []
    for _ in range(FEWBIT_BINS - 1):  # one more segment each round
        best, arg = (cost + best.view(1, -1)).min(dim=1)  # over the last segment's start i
        starts.append(arg)
    edges = [n]
    for arg in reversed(starts):  # walk back from the end of the grid
        edges.append(int(arg[edges[-1]]))
    edges = [0] + edges[::-1]  # 0 = e0 < e1 < ... < e15 = n: bin b covers grid points e_b .. e_(b+1) - 1
    levels = [float((S[b] - S[a]) / (W[b] - W[a])) for a, b in zip(edges[:-1], edges[1:])]
    boundaries = [float((x[e - 1] + x[e]) / 2) for e in edges[1:-1]]
    return (
        torch.tensor(boundaries, dtype=torch.float32),
        torch.tensor(levels + [float("nan")], dtype=torch.float32),
    )


_TABLES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # (function, device) -> tables; a plain dict,
# not lru_cache: torch.compile reads a filled entry as a constant instead of tracing the fit


def fewbit_tables(function: str, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(boundaries (14,), levels (16,)) fp32 of ``"gelu_none"``, ``"gelu_tanh"`` or ``"silu"``.

    Bin b holds the x with b boundaries below them; levels[b] is the mean
    derivative over it (levels[15], the non-finite code, is NaN). Fitted once
    per process, in float64, minimizing the squared error of the derivative
    weighted by a normal density of std 2 on [-8, 8]; :func:`dropit.to_dropit`
    fits them at conversion, so compiled code finds them ready.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    key = (function, device.type, device.index)
    if key not in _TABLES:
        cpu = (function, "cpu", None)
        if cpu not in _TABLES:
            _TABLES[cpu] = _fit(function)
        _TABLES[key] = tuple(t.to(device) for t in _TABLES[cpu])
    return _TABLES[key]
