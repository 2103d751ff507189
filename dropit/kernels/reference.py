"""The torch reference of every kernel in :mod:`dropit.kernels`: what each one computes.

These run on any device (no host sync on CUDA: sizes never depend on the data)
and under ``torch.compile``. The fused CPU kernels (``csrc/dropit_cpu.c``) and
the Triton kernels must give the same tensors bit for bit; tests compare them.

Elements are compared by their magnitude *key*: the element's bits with the
sign cleared, as a signed integer of the same width. Keys order like ``|x|`` for
finite values and Inf, put NaN above Inf (so NaN always passes a threshold),
and make ``-0.0`` and ``0.0`` equal. One definition serves fp32, fp64, bf16 and
fp16.

Bits: bit ``i`` of byte ``j`` stands for element ``8 * j + i``.
"""
from __future__ import annotations

import functools
import math
import sys

import torch

assert sys.byteorder == "little", "dropit's bit packing assumes a little-endian machine"

_LOG2_SAMPLE = 15
SAMPLE_SIZE = 1 << _LOG2_SAMPLE  # elements in the fixed sample of the sampled threshold

_KEY_DTYPE = {2: torch.int16, 4: torch.int32, 8: torch.int64}
_ABS_MASK = {2: 0x7FFF, 4: 0x7FFFFFFF, 8: 0x7FFFFFFFFFFFFFFF}


def magnitude_keys(flat: torch.Tensor) -> torch.Tensor:
    """(n,) float -> (n,) signed int of the same width: the bits of |x|."""
    size = flat.element_size()
    return flat.view(_KEY_DTYPE[size]) & _ABS_MASK[size]


def _mix31(v: torch.Tensor) -> torch.Tensor:
    # int64 throughout; every product stays below 2^63 (see sample_position in csrc)
    v = (v * 0x5BD1E995 + 0x3C6EF372) & 0x7FFFFFFF
    v = v ^ (v >> 13)
    v = (v * 0x27D4EB2D) & 0x7FFFFFFF
    return v ^ (v >> 15)


def sample_positions(n: int, device=None) -> torch.Tensor:
    """The fixed sample of [0, n): one position in each of SAMPLE_SIZE equal strata, ascending.

    Jittered by an integer hash of (stratum, n): the same positions for every
    tensor of n elements on every device, no RNG involved. Jittered strata
    cannot alias with row, channel or plane sizes and spread the sample evenly.
    """
    i = torch.arange(SAMPLE_SIZE, dtype=torch.int64, device=device)
    start = (i * n) >> _LOG2_SAMPLE
    width = (((i + 1) * n) >> _LOG2_SAMPLE) - start
    return start + ((_mix31(i ^ (n & 0x7FFFFFFF)) * width) >> 31)


@functools.lru_cache(maxsize=64)
def _positions(n: int, device: torch.device) -> torch.Tensor:
    return sample_positions(n, device)  # 256 KiB per distinct size and device


def sample_rank(n: int, gamma: float) -> int:
    """The 1-based rank, in the sample, of the threshold that drops a fraction gamma."""
    return math.floor(gamma * min(n, SAMPLE_SIZE))


def threshold(flat: torch.Tensor, rank: int) -> torch.Tensor:
    """The sampled threshold key (0-dim int64): keep the elements whose key is above it.

    The rank-th smallest key of the sample (of all of ``flat`` when it has at
    most SAMPLE_SIZE elements); -1 (keep all) for rank 0. A threshold equal to
    the sample's largest key (more than 1 - gamma of it tied at the maximum:
    a constant tensor) steps one key down, so those ties are kept instead of
    all dropped; a zero threshold stays zero, so zeros are never kept.
    """
    n = flat.numel()
    if rank <= 0 or n == 0:
        return torch.full((), -1, dtype=torch.int64, device=flat.device)
    keys = magnitude_keys(flat)
    if n > SAMPLE_SIZE:
        keys = keys.index_select(0, _positions(n, flat.device))
    keys = keys.long()
    thr = keys.kthvalue(min(rank, keys.numel())).values
    return torch.where((thr == keys.max()) & (thr > 0), thr - 1, thr)


def kth_key(flat: torch.Tensor, rank: int) -> torch.Tensor:
    """The rank-th smallest magnitude key (1-based) of flat (0-dim int64); -1 if rank is out of range."""
    if not 1 <= rank <= flat.numel():
        return torch.full((), -1, dtype=torch.int64, device=flat.device)
    return magnitude_keys(flat).long().kthvalue(rank).values


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """(n,) bool -> (ceil(n/8),) uint8.

    Multiplying a 64-bit word of eight 0/1 bytes b0..b7 by 0x0102040810204080
    moves each b_i to bit 56 + i with no carries between the partial products,
    so the product's top byte is the packed byte (wrapping modulo 2^64 is the
    intended arithmetic).
    """
    n = mask.numel()
    pad = (-n) % 8
    mask = mask.reshape(-1)
    if pad or mask.storage_offset() % 8 or not mask.is_contiguous():
        mask = torch.cat([mask, mask.new_zeros(pad)])
    return (mask.view(torch.int64) * 0x0102040810204080).bitwise_right_shift_(56).to(torch.uint8)


_BIT_OF_BYTE = 0x8040201008040201 - (1 << 64)  # byte i keeps bit i; as a signed int64


def unpack_bits(bits: torch.Tensor, n: int) -> torch.Tensor:
    """(ceil(n/8),) uint8 -> (n,) uint8 flags, non-zero exactly where the bit is set.

    Multiplying a byte by 0x0101010101010101 copies it into all eight bytes of a
    word; masking byte i with bit i leaves it non-zero exactly where bit i was set.
    """
    w = bits.to(torch.int64).mul_(0x0101010101010101).bitwise_and_(_BIT_OF_BYTE)
    return w.view(torch.uint8)[:n]


def compress(flat: torch.Tensor, capacity: int, thr: torch.Tensor | None = None, mask: torch.Tensor | None = None):
    """Store the selected elements of ``flat``: (values (capacity,), bits, count ()).

    Selected: key > thr, or mask != 0. The first ``capacity`` selected, in memory
    order, are stored in ``values`` (the rest of it is zero) and set in ``bits``;
    ``count`` (int64) is how many were selected, which exceeds ``capacity`` only
    when the selection overflowed, and then the bits say exactly what was stored.
    """
    n = flat.numel()
    keep = mask.reshape(-1).bool() if mask is not None else magnitude_keys(flat) > thr
    count = keep.sum(dtype=torch.int64)
    stored = torch.nonzero_static(keep, size=capacity, fill_value=n).view(-1)  # (capacity,), n = unused
    present = stored < n
    if n == 0:
        values = flat.new_zeros(capacity)
    else:
        values = torch.where(present, flat.index_select(0, stored.clamp_max(n - 1)), flat.new_zeros(()))
    padded = ((n + 7) // 8) * 8
    kept = torch.zeros(padded + 1, dtype=torch.bool, device=flat.device)
    kept.index_fill_(0, torch.where(present, stored, padded), True)
    return values, pack_bits(kept[:padded]), count


def expand(values: torch.Tensor, bits: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) dense: ``values`` in order at the set bits, zeros elsewhere."""
    flags = unpack_bits(bits, n)
    at = torch.nonzero_static(flags, size=values.numel(), fill_value=n).view(-1)
    out = values.new_zeros(n + 1)
    out.index_copy_(0, at, values)  # unused slots all land on the extra element n
    return out[:n]


def pack_nonzero(flat: torch.Tensor) -> torch.Tensor:
    """Bits of ``flat != 0`` (NaN counts as non-zero, -0.0 as zero)."""
    return pack_bits(magnitude_keys(flat) != 0)


def mask_grad(grad: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """``grad`` where the bit is set, +0 elsewhere (the ReLU's backward through its mask)."""
    flags = unpack_bits(bits, grad.numel())
    return torch.ops.aten.threshold_backward(grad, flags, 0)


_MASK31 = 0x7FFFFFFF


def _bits31(flat: torch.Tensor) -> torch.Tensor:
    """(n,) int64: 31 bits of each element's own bits (fp64 folded)."""
    size = flat.element_size()
    raw = flat.view(_KEY_DTYPE[size]).long()
    if size == 8:
        raw = raw ^ (raw >> 32)
    return raw & _MASK31


def draw_mask(flat: torch.Tensor, tau: torch.Tensor | float, key: int) -> torch.Tensor:
    """(n,) bool: keep element i when u_i * tau < |x_i| (always for NaN), u_i its hashed uniform draw.

    u_i = (mix31(mix31((i ^ key) & 0x7FFFFFFF) ^ bits31(x_i)) >> 7) * 2^-24, in [0, 1) on a grid of 2^-24: a
    function of (key, position, the element's bits), no RNG state (see :mod:`dropit.draws`). The comparison runs
    in float32 (fp64: float64); tau should already be representable in the input's dtype.
    """
    wide = torch.float64 if flat.dtype == torch.float64 else torch.float32
    i = torch.arange(flat.numel(), dtype=torch.int64, device=flat.device)
    v = _mix31(_mix31((i ^ key) & _MASK31) ^ _bits31(flat))
    u = (v >> 7).to(wide) * (1.0 / 2**24)
    tau = torch.as_tensor(tau, device=flat.device).to(wide)
    return (u * tau < flat.abs().to(wide)) | torch.isnan(flat)
