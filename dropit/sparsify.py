"""From a dense input to the record DropIT keeps for backward, and back.

:class:`DropSpec` is the per-layer setting (dropping rate, strategy, and the
optional lower precision for kept values); :func:`sparsify` applies it to one
tensor and :func:`expand` rebuilds the dense tensor, zeros at the dropped
positions. Both run the ops of :mod:`dropit.ops`, so the same code runs eager
and under ``torch.compile``.

A tensor cached by several layers with the same setting (in a ResNet, a block's
input feeds both its first convolution and its downsampling shortcut) is
sparsified once: in eager mode the later layers get the record the first one
made while that record is still held for backward; under ``torch.compile`` the
compiler merges the identical ops.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch.utils.weak import WeakIdKeyDictionary

from . import ops
from .quant import check_quantize
from .record import Layout, Record, from_memory_order, memory_ordered, notify, observe, position_kind
from .strategies import DEFAULT_STRATEGY, check_gamma, get_strategy

_VALUE_DTYPES = (None, torch.bfloat16, torch.float16)

__all__ = ["DropSpec", "sparsify", "expand", "observe"]


@dataclass
class DropSpec:
    """How one layer drops: ``gamma`` in [0, 1), a strategy name, value precision, and the
    quantize level of its lossy companions (``None``, ``"int8"``, ``"int4"``; see :mod:`dropit.quant`)."""

    gamma: float = 0.9
    strategy: str = DEFAULT_STRATEGY
    value_dtype: torch.dtype | None = None
    quantize: str | None = None

    def __post_init__(self):
        self.gamma = check_gamma(self.gamma)
        get_strategy(self.strategy)
        check_quantize(self.quantize)
        if self.value_dtype not in _VALUE_DTYPES:
            raise ValueError(
                f"value_dtype must be one of None, torch.bfloat16, torch.float16, got {self.value_dtype!r}"
            )


def sparsify(x: torch.Tensor, spec: DropSpec) -> Record:
    """The record of x that backward will expand: kept values + positions."""
    dense, perm = memory_ordered(x)
    n = dense.numel()
    if spec.gamma == 0.0:
        record = Record(dense.view(-1), None, None, Layout("dense", x.shape, x.dtype, perm, n, n))
    else:
        record = (None if torch.compiler.is_compiling() else _recent_record(x, spec)) or _make(x, dense, perm, spec)
    notify(x, record)
    return record


def _make(x: torch.Tensor, dense: torch.Tensor, perm, spec: DropSpec) -> Record:
    n = dense.numel()
    capacity = get_strategy(spec.strategy).capacity(n, spec.gamma)
    value_dtype = spec.value_dtype if spec.value_dtype is not None and x.dtype.itemsize > spec.value_dtype.itemsize else None
    value_size = value_dtype.itemsize if value_dtype is not None else x.element_size()
    kind = position_kind(n, capacity, value_size, x.element_size())
    values, positions, count = ops.call(ops.sparsify_op, dense, spec.gamma, spec.strategy, kind, capacity)
    if kind == "dense":
        record = Record(values, None, None, Layout("dense", x.shape, x.dtype, perm, n, n))
    else:
        if value_dtype is not None:
            values = values.to(value_dtype)
        record = Record(values, positions, count, Layout(kind, x.shape, x.dtype, perm, n, capacity))
    if not torch.compiler.is_compiling():
        _recent[x] = (_share_key(x, spec), record.layout, [weakref.ref(t) for t in record.saved], count)
    return record


def expand(record: Record) -> torch.Tensor:
    """The dense tensor of the record's shape (and memory format), zeros where elements were dropped."""
    layout = record.layout
    values = record.values.to(layout.dtype)
    if layout.kind == "dense":
        flat = values
    else:
        flat = ops.call(ops.expand_op, values, record.positions, layout.kind, layout.numel)
    return from_memory_order(flat, layout.shape, layout.permutation)


# Records by the tensor they were made from, held weakly both ways: an entry
# lives no longer than its tensor, and it is only reused while its tensors are
# alive, that is while some layer still holds them for backward.
_recent = WeakIdKeyDictionary()


def _share_key(x: torch.Tensor, spec: DropSpec) -> tuple:
    # _version changes with every in-place write to x: a modified tensor is a new input.
    return (x._version, spec.gamma, spec.strategy, spec.value_dtype)


def _recent_record(x: torch.Tensor, spec: DropSpec) -> Record | None:
    entry = _recent.get(x)
    if entry is None or entry[0] != _share_key(x, spec):
        return None
    _, layout, refs, count = entry
    saved = [ref() for ref in refs]
    if any(t is None for t in saved):
        return None
    return Record.from_saved(saved, layout)._replace(count=count)
