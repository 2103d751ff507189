"""Compact storage of a sparsified tensor: kept values plus where they were.

``compress(x, keep)`` returns a :class:`Compact` made of plain tensors (so they
can go through ``ctx.save_for_backward`` and any memory tool sees them) and a
small :class:`Layout` of Python metadata. ``expand`` rebuilds the dense tensor,
zeros at the dropped positions.

Positions are stored in whichever form is smaller at the kept density:

- ``"bits"``  a packed bitmask, n/8 bytes whatever the density;
- ``"index"`` int32 flat indices, 4 bytes per kept element (smaller below 1/32);
- ``"dense"`` the masked tensor itself, when values + positions would not be
  smaller than the dense tensor (very low dropping rates).

Elements are flattened in memory order, so channels_last inputs are not copied.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import NamedTuple

import torch

# Bit packing works on 64-bit words holding eight 0/1 bytes b0..b7. Multiplying
# by PACK (bits 56 - 7i for i = 0..7) moves each b_i to bit 56 + i with no
# carries between the partial products, so the top byte of the product is the
# packed byte. Multiplying a packed byte by UNPACK copies it into all eight
# bytes; masking byte i with bit i leaves it non-zero exactly where b_i was set.
# Two passes over n/8 words each way instead of a reduction over n bytes. The
# products wrap modulo 2^64 (the intended arithmetic: only the kept bits matter).
# The byte order inside a word is little-endian on every platform PyTorch ships for.
assert sys.byteorder == "little", "dropit's bit packing assumes a little-endian machine"
_PACK = 0x0102040810204080
_UNPACK = 0x0101010101010101
_BIT_OF_BYTE = 0x8040201008040201 - (1 << 64)  # the same 64 bits as a signed int64


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """(n,) bool -> (ceil(n/8),) uint8; bit i of byte j is mask[8j + i]."""
    n = mask.numel()
    pad = (-n) % 8
    if pad or mask.storage_offset() % 8 or not mask.is_contiguous():
        mask = torch.cat([mask.reshape(-1), mask.new_zeros(pad)])
    return (mask.view(torch.int64) * _PACK).bitwise_right_shift_(56).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: (ceil(n/8),) uint8 -> (n,) uint8 flags.

    Element i is non-zero exactly where bit i was set (its value is that bit's
    weight, 1 << (i % 8)); ``.bool()`` turns it into the mask. Both consumers,
    ``nonzero`` and ``threshold_backward``, take the flags as they are.
    """
    w = packed.to(torch.int64).mul_(_UNPACK).bitwise_and_(_BIT_OF_BYTE)
    return w.view(torch.uint8)[:n]


@dataclass(frozen=True)
class Layout:
    """What ``expand`` needs besides the tensors: shape, dtype, memory order."""

    kind: str  # "bits" | "index" | "dense"
    shape: torch.Size
    dtype: torch.dtype
    permutation: tuple[int, ...] | None  # dims order of the flattened memory layout
    numel: int


class Compact(NamedTuple):
    values: torch.Tensor  # (k,) kept values, or the dense masked tensor for "dense"
    positions: torch.Tensor | None  # packed bits or int32 indices
    layout: Layout

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.values,) if self.positions is None else (self.values, self.positions)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors)


def memory_order(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """A flat (n,) view of x in its memory order, and the permutation used."""
    if x.is_contiguous():
        return x.view(-1), None
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        perm = (0, 2, 3, 1)
    elif x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        perm = (0, 2, 3, 4, 1)
    else:
        return x.reshape(-1), None
    return x.permute(perm).reshape(-1), perm


def position_kind(n: int, k: int, element_size: int) -> str:
    """The smallest record for k of n elements: "bits", "index", or "dense" if neither saves."""
    bits_bytes, index_bytes = (n + 7) // 8, 4 * k
    if k * element_size + min(bits_bytes, index_bytes) >= n * element_size:
        return "dense"
    return "index" if index_bytes < bits_bytes else "bits"


def compress(x: torch.Tensor, keep: torch.Tensor, flat: torch.Tensor, perm) -> Compact:
    """Store the elements of ``flat`` (x in memory order) where ``keep`` is True."""
    idx = keep.nonzero().view(-1)  # (k,) int64; the one host sync: the kept count
    kind = position_kind(flat.numel(), idx.numel(), x.element_size())
    layout = Layout(kind, x.shape, x.dtype, perm, flat.numel())
    if kind == "dense":
        return Compact(torch.where(keep, flat, 0), None, layout)
    values = flat.index_select(0, idx)
    positions = idx.to(torch.int32) if kind == "index" else pack_bits(keep)
    return Compact(values, positions, layout)


def compress_meta(x: torch.Tensor, kept: int, perm) -> Compact:
    """The record ``compress`` would make for ``kept`` kept elements, on the meta device."""
    n = x.numel()
    kind = position_kind(n, kept, x.element_size())
    layout = Layout(kind, x.shape, x.dtype, perm, n)
    if kind == "dense":
        return Compact(x.new_empty(n), None, layout)
    positions = x.new_empty(kept, dtype=torch.int32) if kind == "index" else x.new_empty((n + 7) // 8, dtype=torch.uint8)
    return Compact(x.new_empty(kept), positions, layout)


def expand(values: torch.Tensor, positions: torch.Tensor | None, layout: Layout) -> torch.Tensor:
    """The dense tensor of ``layout.shape``, zeros where elements were dropped."""
    values = values.to(layout.dtype)
    flat = values if layout.kind == "dense" else values.new_zeros(layout.numel)
    if layout.kind == "index" and not flat.is_meta:
        flat.index_copy_(0, positions.long(), values)
    elif layout.kind == "bits" and not flat.is_meta:
        # nonzero + index_copy_ rather than masked_scatter_: both kernels run in
        # parallel on CPU, masked_scatter_ does not (2.5x faster on two cores)
        idx = _set_positions(unpack_bits(positions, layout.numel), values.numel())
        flat.index_copy_(0, idx, values)
    if layout.permutation is None:
        return flat.view(layout.shape)
    perm = layout.permutation
    permuted_shape = [layout.shape[d] for d in perm]
    inverse = sorted(range(len(perm)), key=perm.__getitem__)
    return flat.view(permuted_shape).permute(inverse)


def _set_positions(flags: torch.Tensor, count: int) -> torch.Tensor:
    """The (count,) positions of the non-zero flags, in order."""
    if flags.device.type == "cuda":
        # the count is known, so the GPU need not report it: no host sync
        return torch.nonzero_static(flags, size=count).view(-1)
    return flags.nonzero().view(-1)  # on CPU the faster of the two kernels
