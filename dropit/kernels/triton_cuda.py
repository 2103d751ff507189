"""The Triton kernels of :mod:`dropit.kernels` on CUDA: compress, expand, pack_nonzero, mask_grad.

Each gives, bit for bit, what :mod:`.reference` defines. Elements are handled
by their bit patterns (int16/int32/int64 views of bf16/fp16, fp32, fp64), so
one kernel serves every float dtype and NaN payloads survive unchanged.

No host sync: every size follows from n and the capacity, the threshold is read
from device memory inside the kernel, and the offsets of a compaction come from
a device-side ``torch.cumsum``. Launches per call:

- compress: 3 (``_select``: bits + per-block counts; ``cumsum``; ``_gather``:
  block-local ``tl.cumsum`` + the stores, and the zeros after the last value);
- expand: 3 (``_popcount``; ``cumsum``; ``_scatter``);
- pack_nonzero, mask_grad: 1 each.

Overflow (more selected than ``capacity``): an element is stored when its rank
among the selected, in memory order, is below ``capacity``; ``_gather`` clears
the bits of the others in its own block. No atomics anywhere, so results do
not depend on scheduling.

Imported lazily by :mod:`dropit.kernels`; without ``triton`` the import raises
ImportError and the torch reference runs instead. Tests run these kernels on
CPU tensors under ``TRITON_INTERPRET=1`` (``tests/test_kernels_triton.py``).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 4096  # elements per program; a multiple of 8, so a block owns whole bytes of bits

_INT_OF_WIDTH = {2: torch.int16, 4: torch.int32, 8: torch.int64}
_KEY_MASK = {2: 0x7FFF, 4: 0x7FFFFFFF, 8: 0x7FFFFFFFFFFFFFFF}


@triton.jit
def _pack(flags, BLOCK: tl.constexpr):
    """(BLOCK,) 0/1 int32 -> (BLOCK // 8,) bytes: element 8j + i is bit i of byte j."""
    weights = 1 << tl.arange(0, 8)
    return tl.sum(tl.reshape(flags, (BLOCK // 8, 8)) * weights[None, :], axis=1).to(tl.uint8)


@triton.jit
def _unpack(bits_ptr, start, n, BLOCK: tl.constexpr):
    """The 0/1 int32 flags of elements [start, start + BLOCK) (0 beyond n)."""
    byte_at = start // 8 + tl.arange(0, BLOCK // 8)
    byte = tl.load(bits_ptr + byte_at, mask=byte_at < (n + 7) // 8, other=0).to(tl.int32)
    flags = tl.reshape((byte[:, None] >> tl.arange(0, 8)[None, :]) & 1, (BLOCK,))
    return tl.where(start + tl.arange(0, BLOCK) < n, flags, 0)


@triton.jit
def _select(x_ptr, mask_ptr, thr_ptr, bits_ptr, counts_ptr, n, KEY_MASK: tl.constexpr,
            USE_MASK: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    start = pid.to(tl.int64) * BLOCK
    at = start + tl.arange(0, BLOCK)
    inside = at < n
    if USE_MASK:
        keep = tl.load(mask_ptr + at, mask=inside, other=0) != 0
    else:
        key = tl.load(x_ptr + at, mask=inside, other=0).to(tl.int64) & KEY_MASK
        keep = inside & (key > tl.load(thr_ptr))
    flags = keep.to(tl.int32)
    byte_at = start // 8 + tl.arange(0, BLOCK // 8)
    tl.store(bits_ptr + byte_at, _pack(flags, BLOCK), mask=byte_at < (n + 7) // 8)
    tl.store(counts_ptr + pid, tl.sum(flags, axis=0))


@triton.jit
def _gather(x_ptr, bits_ptr, ends_ptr, values_ptr, count_ptr, n, capacity, blocks,
            BLOCK: tl.constexpr):
    """ends: inclusive prefix sums of the blocks' counts. The grid covers both the blocks of x and
    those of the values (capacity may exceed n): program p zeroes the unused slots of values block p."""
    pid = tl.program_id(0)
    total = tl.load(ends_ptr + blocks - 1)
    if pid == 0:
        tl.store(count_ptr, total)
    # the zeros after the last stored value: slot pid of the values
    slot = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    tl.store(values_ptr + slot, tl.zeros((BLOCK,), dtype=values_ptr.dtype.element_ty),
             mask=(slot >= total) & (slot < capacity))
    if pid < blocks:
        start = pid.to(tl.int64) * BLOCK
        at = start + tl.arange(0, BLOCK)
        first = tl.load(ends_ptr + pid - 1, mask=pid > 0, other=0)  # selected before this block
        flags = _unpack(bits_ptr, start, n, BLOCK)
        rank = first + tl.cumsum(flags, axis=0) - flags  # among all selected, in memory order
        stored = (flags != 0) & (rank < capacity)
        x = tl.load(x_ptr + at, mask=stored, other=0)
        tl.store(values_ptr + rank, x, mask=stored)
        if first + tl.sum(flags, axis=0) > capacity:  # overflow: the bits say what was stored
            byte_at = start // 8 + tl.arange(0, BLOCK // 8)
            tl.store(bits_ptr + byte_at, _pack(stored.to(tl.int32), BLOCK), mask=byte_at < (n + 7) // 8)


@triton.jit
def _popcount(bits_ptr, counts_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    tl.store(counts_ptr + pid, tl.sum(_unpack(bits_ptr, pid.to(tl.int64) * BLOCK, n, BLOCK), axis=0))


@triton.jit
def _scatter(values_ptr, bits_ptr, ends_ptr, out_ptr, n, capacity, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    start = pid.to(tl.int64) * BLOCK
    at = start + tl.arange(0, BLOCK)
    first = tl.load(ends_ptr + pid - 1, mask=pid > 0, other=0)
    flags = _unpack(bits_ptr, start, n, BLOCK)
    rank = first + tl.cumsum(flags, axis=0) - flags
    # set bits beyond the values' capacity stay zero, as in the reference
    v = tl.load(values_ptr + rank, mask=(flags != 0) & (rank < capacity), other=0)
    tl.store(out_ptr + at, v, mask=at < n)


@triton.jit
def _nonzero(x_ptr, bits_ptr, n, KEY_MASK: tl.constexpr, BLOCK: tl.constexpr):
    start = tl.program_id(0).to(tl.int64) * BLOCK
    at = start + tl.arange(0, BLOCK)
    key = tl.load(x_ptr + at, mask=at < n, other=0).to(tl.int64) & KEY_MASK
    byte_at = start // 8 + tl.arange(0, BLOCK // 8)
    tl.store(bits_ptr + byte_at, _pack((key != 0).to(tl.int32), BLOCK), mask=byte_at < (n + 7) // 8)


@triton.jit
def _mask_grad(g_ptr, bits_ptr, out_ptr, n, BLOCK: tl.constexpr):
    start = tl.program_id(0).to(tl.int64) * BLOCK
    at = start + tl.arange(0, BLOCK)
    flags = _unpack(bits_ptr, start, n, BLOCK)
    g = tl.load(g_ptr + at, mask=(at < n) & (flags != 0), other=0)
    tl.store(out_ptr + at, g, mask=at < n)


def _ints(t: torch.Tensor) -> torch.Tensor:
    """The same memory as a signed int tensor of the element's width (a view, no copy)."""
    return t.view(_INT_OF_WIDTH[t.element_size()])


def _check_block(block: int) -> None:
    if block % 8 or block & (block - 1):
        raise ValueError(f"block must be a power of two and a multiple of 8, got {block}")


def compress(flat: torch.Tensor, capacity: int, thr: torch.Tensor | None = None,
             mask: torch.Tensor | None = None, *, block: int = BLOCK):
    """(values (capacity,), bits (ceil(n/8),) uint8, count () int64): see :func:`.reference.compress`."""
    if (thr is None) == (mask is None):
        raise ValueError("compress needs exactly one of thr and mask")
    _check_block(block)
    n = flat.numel()
    values = flat.new_empty(capacity)
    bits = torch.empty((n + 7) // 8, dtype=torch.uint8, device=flat.device)
    if n == 0:
        return values.zero_(), bits, torch.zeros((), dtype=torch.int64, device=flat.device)
    count = torch.empty((), dtype=torch.int64, device=flat.device)  # _gather writes it
    blocks = triton.cdiv(n, block)
    counts = torch.empty(blocks, dtype=torch.int32, device=flat.device)
    xi = _ints(flat)
    if mask is not None:
        mask = mask.reshape(-1).contiguous().view(torch.uint8)
    _select[(blocks,)](
        xi, mask if mask is not None else bits, thr if thr is not None else count, bits, counts, n,
        KEY_MASK=_KEY_MASK[flat.element_size()], USE_MASK=mask is not None, BLOCK=block,
    )
    ends = torch.cumsum(counts, 0, dtype=torch.int64)
    grid = max(blocks, triton.cdiv(capacity, block))
    _gather[(grid,)](xi, bits, ends, _ints(values), count, n, capacity, blocks, BLOCK=block)
    return values, bits, count


def expand(values: torch.Tensor, bits: torch.Tensor, n: int, *, block: int = BLOCK) -> torch.Tensor:
    """(n,) dense: ``values`` in order at the set bits, zeros elsewhere."""
    _check_block(block)
    out = values.new_empty(n)
    if n == 0:
        return out
    blocks = triton.cdiv(n, block)
    counts = torch.empty(blocks, dtype=torch.int32, device=values.device)
    _popcount[(blocks,)](bits, counts, n, BLOCK=block)
    ends = torch.cumsum(counts, 0, dtype=torch.int64)
    _scatter[(blocks,)](_ints(values), bits, ends, _ints(out), n, values.numel(), BLOCK=block)
    return out


def pack_nonzero(flat: torch.Tensor, *, block: int = BLOCK) -> torch.Tensor:
    """Bits of ``flat != 0`` (NaN non-zero, -0.0 zero)."""
    _check_block(block)
    n = flat.numel()
    bits = torch.empty((n + 7) // 8, dtype=torch.uint8, device=flat.device)
    if n:
        _nonzero[(triton.cdiv(n, block),)](_ints(flat), bits, n, KEY_MASK=_KEY_MASK[flat.element_size()], BLOCK=block)
    return bits


def mask_grad(grad: torch.Tensor, bits: torch.Tensor, *, block: int = BLOCK) -> torch.Tensor:
    """``grad`` (flat, contiguous) where the bit is set, +0 elsewhere."""
    _check_block(block)
    n = grad.numel()
    out = torch.empty_like(grad)
    if n:
        _mask_grad[(triton.cdiv(n, block),)](_ints(grad), bits, _ints(out), n, BLOCK=block)
    return out
