"""The kernels under DropIT's records: one interface, one implementation per device.

    thr = threshold(flat, rank)                       # sampled threshold key
    key = kth_key(flat, rank)                         # exact rank-th smallest key
    values, bits, count = compress(flat, capacity, thr=thr)   # or mask=keep
    dense = expand(values, bits, n)
    bits = pack_nonzero(flat); grad_in = mask_grad(grad, bits)  # the ReLU companion
    keep = draw_mask(flat, tau, key)                  # the "unbiased" strategy's hashed draws
    codes, scales = quantize(flat, 8, 64); flat = dequantize(codes, scales, 8, 64, n, dtype)  # lossy companions
    codes = fewbit_encode(flat, boundaries); grad_in = fewbit_grad(grad, codes, levels)

:mod:`.quant_reference` defines the quantization kernels; :mod:`.quant_cpu`
runs their C versions (``csrc/dropit_quant.c``, fp32/bf16/fp16; CUDA runs the
reference, which inductor fuses under ``torch.compile``).

:mod:`.reference` defines what each computes, in torch. The implementation run
is chosen by the tensor's device:

- CPU: the fused C kernels of :mod:`.cpu` (one pass each way), or the
  reference where no C compiler is available (or ``DROPIT_KERNELS=torch``);
- CUDA: the Triton kernels of :mod:`.triton_cuda`, or the reference without
  Triton (either way no host sync: sizes never depend on the data);
- anything else, and inside ``torch.compile`` tracing: the reference.

``flat`` is a 1-D contiguous tensor of a float dtype (fp32, fp64, bf16, fp16).
"""
from __future__ import annotations

import functools

import torch

from . import cpu, quant_cpu, quant_reference, reference
from .reference import SAMPLE_SIZE, magnitude_keys, pack_bits, sample_rank, unpack_bits

__all__ = [
    "threshold",
    "kth_key",
    "compress",
    "expand",
    "pack_nonzero",
    "mask_grad",
    "draw_mask",
    "backend",
    "quantize",
    "dequantize",
    "fewbit_encode",
    "fewbit_grad",
    "SAMPLE_SIZE",
    "sample_rank",
    "magnitude_keys",
    "pack_bits",
    "unpack_bits",
]

_FLOATS = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


@functools.lru_cache(maxsize=1)
def _triton():
    try:
        from . import triton_cuda
    except ImportError:  # no triton in this environment
        return None
    return triton_cuda


def backend(t: torch.Tensor) -> str:
    """Which implementation runs for tensors like t: "c", "triton" or "torch"."""
    if t.dtype in _FLOATS and not torch.compiler.is_compiling():
        if t.device.type == "cpu" and cpu.library() is not None:
            return "c"
        if t.device.type == "cuda" and _triton() is not None:
            return "triton"
    return "torch"


def threshold(flat: torch.Tensor, rank: int) -> torch.Tensor | int:
    """The sampled threshold key: an int on the C backend, a 0-dim int64 tensor otherwise."""
    if backend(flat) == "c":
        return cpu.threshold(flat, rank, SAMPLE_SIZE)
    return reference.threshold(flat, rank)


def kth_key(flat: torch.Tensor, rank: int) -> torch.Tensor | int:
    """The rank-th smallest magnitude key (1-based) of flat: an int on the C backend, else a 0-dim tensor."""
    if backend(flat) == "c":
        return cpu.kth_key(flat, rank)
    return reference.kth_key(flat, rank)


def compress(flat: torch.Tensor, capacity: int, thr=None, mask: torch.Tensor | None = None):
    """(values (capacity,), bits (ceil(n/8),) uint8, count () int64): see :func:`.reference.compress`."""
    if (thr is None) == (mask is None):
        raise ValueError("compress needs exactly one of thr and mask")
    which = backend(flat)
    if which == "c":
        return cpu.compress(flat, capacity, -1 if thr is None else int(thr), mask)
    if not isinstance(thr, torch.Tensor) and thr is not None:
        thr = torch.tensor(thr, dtype=torch.int64, device=flat.device)
    if which == "triton":
        return _triton().compress(flat, capacity, thr, mask)
    return reference.compress(flat, capacity, thr, mask)


def expand(values: torch.Tensor, bits: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) dense: values at the set bits in order, zeros elsewhere."""
    which = backend(values)
    if which == "c":
        return cpu.expand(values, bits, n)
    if which == "triton":
        return _triton().expand(values, bits, n)
    return reference.expand(values, bits, n)


def pack_nonzero(flat: torch.Tensor) -> torch.Tensor:
    """Bits of flat != 0 (NaN non-zero, -0.0 zero)."""
    which = backend(flat)
    if which == "c":
        return cpu.pack_nonzero(flat)
    if which == "triton":
        return _triton().pack_nonzero(flat)
    return reference.pack_nonzero(flat)


def mask_grad(grad: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """grad (flat) where the bit is set, +0 elsewhere."""
    which = backend(grad)
    if which == "c":
        return cpu.mask_grad(grad, bits)
    if which == "triton":
        return _triton().mask_grad(grad, bits)
    return reference.mask_grad(grad, bits)


def draw_mask(flat: torch.Tensor, tau: torch.Tensor, key: int) -> torch.Tensor:
    """(n,) bool: the ``"unbiased"`` keep mask, see :func:`.reference.draw_mask` (C for fp32/fp64 on CPU)."""
    if backend(flat) == "c" and flat.dtype in (torch.float32, torch.float64):
        return cpu.draw_mask(flat, float(tau), key)
    return reference.draw_mask(flat, tau, key)


# ---- quantization (the lossy companions; see dropit.quant and .quant_reference) ----


def quantize(flat: torch.Tensor, bits: int, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, scales (groups,) fp32): per-group absmax codes of 8 or 4 bits, nearest rounding."""
    if backend(flat) == "c" and flat.dtype in quant_cpu.DTYPES:
        return quant_cpu.quantize(flat, bits, group)
    return quant_reference.quantize(flat, bits, group)


def dequantize(codes: torch.Tensor, scales: torch.Tensor, bits: int, group: int, n: int, dtype) -> torch.Tensor:
    """(n,) of dtype: code * scale, NaN where the input was not finite."""
    if backend(scales) == "c" and dtype in quant_cpu.DTYPES:
        return quant_cpu.dequantize(codes, scales, bits, group, n, dtype)
    return quant_reference.dequantize(codes, scales, bits, group, n, dtype)


def fewbit_encode(flat: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    """((n + 1) // 2,) uint8: each element's bin among the boundaries, 15 for non-finite."""
    if backend(flat) == "c" and flat.dtype in quant_cpu.DTYPES:
        return quant_cpu.fewbit_encode(flat, boundaries)
    return quant_reference.fewbit_encode(flat, boundaries)


def fewbit_grad(grad: torch.Tensor, codes: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """grad * levels[code] (fp32 arithmetic), in grad's dtype."""
    if backend(grad) == "c" and grad.dtype in quant_cpu.DTYPES:
        return quant_cpu.fewbit_grad(grad, codes, levels)
    return quant_reference.fewbit_grad(grad, codes, levels)
