"""The torch reference of the quantization kernels: what each one computes.

    codes, scales = quantize(flat, bits, group)          # per-group absmax, nearest rounding
    flat = dequantize(codes, scales, bits, group, n, dtype)
    codes = fewbit_encode(flat, boundaries)              # 4-bit bin index of a derivative table
    grad_in = fewbit_grad(grad, codes, levels)           # grad * levels[code]

These run on any device and under ``torch.compile`` (inductor fuses them); the
C kernels (``csrc/dropit_quant.c``) give the same tensors bit for bit, and
tests compare them.

Integer codes (``bits`` 8 or 4): ``flat`` (n,) is split into groups of
``group`` consecutive elements (the last one padded with zeros); each group
keeps one fp32 scale ``absmax / qmax`` (qmax = 127 or 7) over its finite
elements, and each element the nearest integer of ``x * (1 / scale)`` in
[-qmax, qmax] (round half to even). The code -qmax - 1 marks a non-finite
element (NaN, +-Inf), which dequantizes to NaN. A group whose largest finite
magnitude is below 2^-100 stores zeros (so that 1 / scale stays finite). 8-bit codes
are int8 (n,); 4-bit codes are packed two per byte, element 2j in the low
nibble of byte j, as ``code + 8`` (so 0 is the non-finite marker and an odd
tail's high nibble is 8, a zero).

Few-bit codes: the index of the bin of ``x`` among 14 sorted boundaries
(the count of boundaries below x, 0..14), or 15 for a non-finite x; packed two
per byte like the 4-bit codes. ``levels`` (16,) fp32 holds the derivative of
each bin and NaN at index 15.
"""
from __future__ import annotations

import torch

TINY = 2.0**-100  # groups whose absmax is below it store zeros (so 1 / scale stays finite)
NONFINITE_NIBBLE = 0  # the packed 4-bit code of a non-finite element
FEWBIT_NAN = 15  # the few-bit code of a non-finite element


def qmax(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def packed_numel(n: int, bits: int) -> int:
    """Bytes of the codes of n elements."""
    return n if bits == 8 else (n + 1) // 2


def num_groups(n: int, group: int) -> int:
    return -(-n // group)


def _grouped(x: torch.Tensor, group: int, fill: float = 0.0) -> torch.Tensor:
    """(n,) -> (groups, group), the tail padded with ``fill``."""
    pad = num_groups(x.numel(), group) * group - x.numel()
    if pad:
        x = torch.cat([x, x.new_full((pad,), fill)])
    return x.view(-1, group)


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """(n,) uint8 values in [0, 16) -> ((n + 1) // 2,) uint8, element 2j in the low nibble."""
    if codes.numel() % 2:
        codes = torch.cat([codes, codes.new_full((1,), 8)])
    pairs = codes.view(-1, 2)
    return pairs[:, 0] | (pairs[:, 1] << 4)


def unpack_nibbles(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_nibbles`: (n,) uint8 in [0, 16)."""
    return torch.stack([packed & 15, packed >> 4], dim=1).view(-1)[:n]


def quantize(flat: torch.Tensor, bits: int, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n,) float -> (codes, scales (groups,) fp32); see the module docstring."""
    n, q = flat.numel(), qmax(bits)
    x = _grouped(flat.float(), group)  # (groups, group)
    finite = x.isfinite()
    x = torch.where(finite, x, 0.0)
    absmax = x.abs().amax(dim=1)  # (groups,)
    normal = absmax >= TINY
    scales = torch.where(normal, absmax / q, 0.0)
    inv = torch.where(normal, 1.0 / torch.where(normal, scales, 1.0), 0.0)
    codes = torch.round(x * inv.unsqueeze(1)).clamp_(-q, q)
    codes = torch.where(finite, codes, -q - 1).to(torch.int8).view(-1)[:n]
    if bits == 4:
        codes = pack_nibbles((codes + 8).to(torch.uint8))
    return codes, scales


def dequantize(
    codes: torch.Tensor, scales: torch.Tensor, bits: int, group: int, n: int, dtype: torch.dtype
) -> torch.Tensor:
    """(n,) of ``dtype``: code * scale, NaN at the non-finite marker."""
    q = qmax(bits)
    c = codes if bits == 8 else unpack_nibbles(codes, n).to(torch.int8) - 8
    c = _grouped(c, group)  # (groups, group) int8
    values = torch.where(c == -q - 1, float("nan"), c.float() * scales.unsqueeze(1))
    return values.view(-1)[:n].to(dtype)


def fewbit_encode(flat: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    """(n,) float -> ((n + 1) // 2,) uint8: packed bin indices (15 for non-finite)."""
    x = flat.float()
    bins = torch.bucketize(x, boundaries, right=False)  # count of boundaries < x
    codes = torch.where(x.isfinite(), bins, FEWBIT_NAN).to(torch.uint8)
    return pack_nibbles(codes)


def fewbit_grad(grad: torch.Tensor, codes: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """(n,) grad * levels[code], computed in fp32, in grad's dtype."""
    c = unpack_nibbles(codes, grad.numel()).long()
    return (grad.float() * levels.index_select(0, c)).to(grad.dtype)
