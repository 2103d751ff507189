"""ctypes wrappers of the quantization kernels in ``csrc/dropit_quant.c`` (built with the others by :mod:`.cpu`).

Each returns what the same-named function of :mod:`.quant_reference` returns,
bit for bit; callers (:mod:`dropit.kernels`) check that the library loaded and
the dtype is one of :data:`DTYPES`.
"""
from __future__ import annotations

import ctypes
import functools

import torch

from . import cpu
from .quant_reference import num_groups, packed_numel

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_SUFFIX = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
MAX_GROUP = 16384  # QCHUNK in the C file

_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SIGNATURES = {
    "quantize": [_P, _I64, _I64, _INT, _P, _P, _INT],
    "dequantize": [_P, _P, _I64, _I64, _INT, _P, _INT],
    "fewbit_encode": [_P, _I64, _P, _INT, _P, _INT],
    "fewbit_grad": [_P, _P, _I64, _P, _P, _INT],
}


@functools.lru_cache(maxsize=None)
def _fn(name: str, dtype: torch.dtype):
    fn = getattr(cpu.library(), f"dropit_{name}_{_SUFFIX[dtype]}")
    fn.restype, fn.argtypes = None, _SIGNATURES[name]
    return fn


def _check_group(bits: int, group: int) -> None:
    if not (0 < group <= MAX_GROUP) or (bits == 4 and group % 2):
        raise ValueError(f"group size must be in [1, {MAX_GROUP}] (even for 4 bits), got {group}")


def quantize(flat: torch.Tensor, bits: int, group: int):
    _check_group(bits, group)
    n = flat.numel()
    codes = torch.empty(packed_numel(n, bits), dtype=torch.int8 if bits == 8 else torch.uint8)
    scales = torch.empty(num_groups(n, group), dtype=torch.float32)
    _fn("quantize", flat.dtype)(
        flat.data_ptr(), n, group, bits, codes.data_ptr(), scales.data_ptr(), torch.get_num_threads()
    )
    return codes, scales


def dequantize(codes: torch.Tensor, scales: torch.Tensor, bits: int, group: int, n: int, dtype):
    _check_group(bits, group)
    out = torch.empty(n, dtype=dtype)
    _fn("dequantize", dtype)(
        codes.data_ptr(), scales.data_ptr(), n, group, bits, out.data_ptr(), torch.get_num_threads()
    )
    return out


def fewbit_encode(flat: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    n = flat.numel()
    bounds = boundaries.to(torch.float32).contiguous()
    if bounds.numel() > 15:
        raise ValueError(f"at most 15 boundaries fit 4-bit codes, got {bounds.numel()}")
    codes = torch.empty(packed_numel(n, 4), dtype=torch.uint8)
    _fn("fewbit_encode", flat.dtype)(
        flat.data_ptr(), n, bounds.data_ptr(), bounds.numel(), codes.data_ptr(), torch.get_num_threads()
    )
    return codes


def fewbit_grad(grad: torch.Tensor, codes: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    lut = levels.to(torch.float32).contiguous()
    if lut.numel() != 16:
        raise ValueError(f"levels must have 16 entries, got {lut.numel()}")
    out = torch.empty_like(grad)
    _fn("fewbit_grad", grad.dtype)(
        grad.data_ptr(), codes.data_ptr(), grad.numel(), lut.data_ptr(), out.data_ptr(), torch.get_num_threads()
    )
    return out
