"""From a dense input to the compact record DropIT keeps for backward.

:class:`DropSpec` is the per-layer setting (dropping rate, strategy, and the
optional lower precision for kept values); :func:`sparsify` applies it to one
tensor. Active :func:`observers` (the memory meter) are told the dense size of
every tensor sparsified, so reports can show what the compact record replaced.

A tensor cached by several layers with the same setting (in a ResNet, a block's
input feeds both its first convolution and its downsampling shortcut) is
sparsified once: the later layers get the record the first one made while
that record is still held for backward, so it is computed and stored once.
"""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch.utils.weak import WeakIdKeyDictionary

from .storage import Compact, Layout, compress, compress_meta, memory_order
from .strategies import DEFAULT_STRATEGY, check_gamma, get_strategy, num_kept

_VALUE_DTYPES = (None, torch.bfloat16, torch.float16)


@dataclass
class DropSpec:
    """How one layer drops: ``gamma`` in [0, 1), a strategy name, value precision."""

    gamma: float = 0.9
    strategy: str = DEFAULT_STRATEGY
    value_dtype: torch.dtype | None = None
    _select: Callable = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.gamma = check_gamma(self.gamma)
        self._select = get_strategy(self.strategy)
        if self.value_dtype not in _VALUE_DTYPES:
            raise ValueError(
                f"value_dtype must be one of None, torch.bfloat16, torch.float16, got {self.value_dtype!r}"
            )


_observers: list[Callable[[torch.Tensor, Compact], None]] = []


@contextlib.contextmanager
def observe(callback: Callable[[torch.Tensor, Compact], None]) -> Iterator[None]:
    """Call ``callback(dense_input, compact_record)`` for each tensor sparsified inside."""
    _observers.append(callback)
    try:
        yield
    finally:
        _observers.remove(callback)


def sparsify(x: torch.Tensor, spec: DropSpec) -> Compact:
    """The compact record of x that backward will expand: kept values + positions."""
    flat, perm = memory_order(x)
    if spec.gamma == 0.0:
        record = Compact(flat, None, Layout("dense", x.shape, x.dtype, perm, flat.numel()))
    else:
        record = _recent_record(x, spec) or _compress(x, flat, perm, spec)
    for callback in _observers:
        callback(x, record)
    return record


def _compress(x: torch.Tensor, flat: torch.Tensor, perm, spec: DropSpec) -> Compact:
    if x.is_meta:
        record = compress_meta(x, num_kept(flat.numel(), spec.gamma), perm)
    else:
        record = compress(x, spec._select(flat, spec.gamma), flat, perm)
    if spec.value_dtype is not None and record.layout.kind != "dense" and x.dtype.itemsize > spec.value_dtype.itemsize:
        record = record._replace(values=record.values.to(spec.value_dtype))
    _recent[x] = (_share_key(x, spec), record.layout, [weakref.ref(t) for t in record.tensors])
    return record


# Records by the tensor they were made from, held weakly both ways: an entry
# lives no longer than its tensor, and it is only reused while its tensors are
# alive, that is while some layer still holds them for backward.
_recent = WeakIdKeyDictionary()


def _share_key(x: torch.Tensor, spec: DropSpec) -> tuple:
    # _version changes with every in-place write to x: a modified tensor is a new input.
    return (x._version, spec.gamma, spec.strategy, spec.value_dtype)


def _recent_record(x: torch.Tensor, spec: DropSpec) -> Compact | None:
    entry = _recent.get(x)
    if entry is None or entry[0] != _share_key(x, spec):
        return None
    _, layout, refs = entry
    tensors = [ref() for ref in refs]
    if any(t is None for t in tensors):
        return None
    values, positions = tensors if len(tensors) == 2 else (tensors[0], None)
    return Compact(values, positions, layout)
