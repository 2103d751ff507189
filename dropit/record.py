"""What a converted layer keeps for backward instead of its dense input: a record.

A :class:`Record` is made of plain tensors (saved with ``ctx.save_for_backward``,
so every memory tool sees them) and a :class:`Layout` of static Python metadata.
Every size in it follows from the input's shape, dtype and the dropping rate
alone, never from the data: so ``torch.compile`` traces records with static
shapes, and a GPU never has to tell the host how many elements were kept.

Kinds, chosen by which is smallest for the layer's capacity (see
:func:`position_kind`):

- ``"bits"``  values (capacity,) + a packed bitmask, n/8 bytes: the usual one;
- ``"index"`` values (capacity,) + int32 flat positions (capacity,), padded with
  n: smaller when less than 1/32 of the elements are kept;
- ``"dense"`` the masked tensor itself, when the others would not be smaller
  (very low dropping rates), or the input itself at rate 0.

``capacity`` is the most elements the record can hold: exactly the kept count
for ``"mink"``, the expected count plus a safety margin for the estimated
strategies (see :mod:`dropit.strategies`). ``count`` is how many the strategy
selected. If it exceeds the capacity (an overflow), the first ``capacity`` of
them in memory order are stored and the positions say exactly which: the weight
gradient is then that of a slightly sparser input, never one of mismatched
values and positions.

Elements are flattened in memory order, so channels_last inputs are not copied.

Observers (the memory meter) are told of every record made, with the dense
tensor it stands for, and of the other compact tensors saved for backward
(a ReLU's 1-bit mask, a max pool's window offsets): :func:`observe`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple

import torch


@dataclass(frozen=True)
class Layout:
    """What ``expand`` needs besides the tensors: kind, shape, dtype, memory order, capacity."""

    kind: str  # "bits" | "index" | "dense" | "absent"
    shape: torch.Size
    dtype: torch.dtype
    permutation: tuple[int, ...] | None  # dims order of the flattened memory layout
    numel: int
    capacity: int  # elements the values can hold (numel for "dense")


class Record(NamedTuple):
    values: torch.Tensor  # (capacity,) kept values; the dense (masked) tensor for "dense"
    positions: torch.Tensor | None  # packed bits or int32 positions; None for "dense"
    count: torch.Tensor | None  # () int64: elements selected (> capacity: overflowed); None for "dense"
    layout: Layout

    @property
    def saved(self) -> tuple[torch.Tensor, ...]:
        """The tensors backward needs: what goes through ``ctx.save_for_backward``."""
        return (self.values,) if self.positions is None else (self.values, self.positions)

    def nbytes(self) -> int:
        """Bytes held for backward."""
        return sum(t.numel() * t.element_size() for t in self.saved)

    @classmethod
    def from_saved(cls, saved, layout: Layout) -> "Record":
        values, positions = (saved[0], None) if len(saved) == 1 else saved
        return cls(values, positions, None, layout)


def memory_order(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """A flat (n,) view of x in its memory order, and the permutation used.

    A view whenever x is dense (a permuted contiguous tensor: channels_last, an
    attention head view of a projection, ...); otherwise a contiguous copy, and
    the permutation None.
    """
    dense, perm = memory_ordered(x)
    return dense.view(-1), perm


def memory_ordered(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """:func:`memory_order` before the flattening: x permuted to its memory order (a contiguous view), or a
    contiguous copy. The custom ops take this and flatten it themselves: under ``torch.compile`` a flat view
    made outside an op is a second tensor to inductor, which then writes the input twice (seen for GELU's
    output, one buffer for the op and one for the next matmul)."""
    if x.is_contiguous():
        return x, None
    perm = tuple(sorted(range(x.dim()), key=lambda d: (-x.stride(d), d)))
    permuted = x.permute(perm)
    if permuted.is_contiguous():
        return permuted, perm
    return x.contiguous(), None  # not reshape: a strided slice would stay a strided view


def from_memory_order(flat: torch.Tensor, shape, permutation) -> torch.Tensor:
    """Inverse of :func:`memory_order`: the (n,) tensor viewed with ``shape`` and its strides."""
    if permutation is None:
        return flat.view(shape)
    permuted = [shape[d] for d in permutation]
    inverse = sorted(range(len(permutation)), key=permutation.__getitem__)
    return flat.view(permuted).permute(inverse)


def position_kind(n: int, capacity: int, value_size: int, element_size: int) -> str:
    """The smallest record for up to ``capacity`` of n elements: "bits", "index", or "dense"."""
    bits_bytes, index_bytes = (n + 7) // 8, 4 * capacity
    if capacity * value_size + min(bits_bytes, index_bytes) >= n * element_size:
        return "dense"
    return "index" if index_bytes < bits_bytes and n < 2**31 else "bits"


_observers: list[Callable[[torch.Tensor, Record], None]] = []
_stored_observers: list[Callable[[torch.Tensor, str], None]] = []


@contextlib.contextmanager
def observe(
    callback: Callable[[torch.Tensor, Record], None], *, on_stored: Callable[[torch.Tensor, str], None] | None = None
) -> Iterator[None]:
    """Call ``callback(dense_input, record)`` for each record made inside (eager mode only), and
    ``on_stored(saved, kind)`` for each other compact tensor announced with :func:`stored_as`."""
    _observers.append(callback)
    if on_stored is not None:
        _stored_observers.append(on_stored)
    try:
        yield
    finally:
        _observers.remove(callback)
        if on_stored is not None:
            _stored_observers.remove(on_stored)


def notify(dense: torch.Tensor, record) -> None:
    """Tell the observers about a record that stands for ``dense``."""
    if _observers and not torch.compiler.is_compiling():
        for callback in list(_observers):
            callback(dense, record)


def stored_as(saved: torch.Tensor, kind: str) -> None:
    """Tell the observers how a tensor saved for backward without a record is stored, e.g. a
    ReLU's ``"1-bit mask"``: the memory meter shows that instead of "plain"."""
    if _stored_observers and not torch.compiler.is_compiling():
        for callback in list(_stored_observers):
            callback(saved, kind)
