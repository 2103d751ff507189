"""The 4-bit quantization kernels as ``torch.library`` custom ops, so compiled CPU graphs run the C kernels.

    codes, scales = quant_ops.quantize(flat, 4, 32)     # what dropit.quant calls; eager or compiled
    flat = quant_ops.dequantize(codes, scales, 4, 32, n, torch.float32)

In eager mode these are :mod:`dropit.kernels`' functions (the C kernels on
CPU). Under ``torch.compile`` the kernels fall back to the torch reference for
inductor to compile. On CPU that is a good deal for int8 and a bad one for the
4-bit codes. Minimum times over 30 calls on 2M fp32 elements, one thread (a
busy machine, so indicative only; ``benchmarks/profile_compiled.py`` has the
whole-step view):

- int8 quantize 1.6 ms compiled reference, 3.4 ms C; dequantize 1.9 and 2.6 ms;
- int4 quantize 9.9 and 6.7 ms; dequantize 19 and 2.2 ms (the nibble unpacking);
- few-bit encode 195 and 2.6 ms (the bucketing); few-bit grad 15 and 1.3 ms.

So a compiled CPU graph calls the 4-bit and few-bit kernels as opaque custom
ops (``torch.ops.dropit.quantize``, ...) with fake implementations that give
the static output shapes, as :mod:`dropit.ops` does for the drop, and leaves
int8 to inductor, which also fuses it into the neighbouring kernels. On CUDA
the reference stays (inductor makes Triton kernels of it). The outputs are the
same bit for bit either way (the C kernels match the reference; tests).
"""
from __future__ import annotations

import torch

from . import kernels
from .kernels import cpu, quant_cpu
from .kernels.quant_reference import num_groups, packed_numel


@torch.compiler.assume_constant_result  # loading (or building) the library is not for dynamo to trace
def _c_library() -> bool:
    return cpu.library() is not None


def _opaque(t: torch.Tensor, dtype=None) -> bool:
    """Call the custom op: compiling, on CPU, with the C library and a dtype it handles."""
    return (torch.compiler.is_compiling() and t.device.type == "cpu" and (dtype or t.dtype) in quant_cpu.DTYPES
            and _c_library())


@torch.library.custom_op("dropit::quantize", mutates_args=())
def quantize_op(flat: torch.Tensor, bits: int, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    codes, scales = kernels.quantize(flat.contiguous(), bits, group)
    return codes, scales


@quantize_op.register_fake
def _(flat, bits, group):
    n = flat.numel()
    codes = flat.new_empty(packed_numel(n, bits), dtype=torch.int8 if bits == 8 else torch.uint8)
    return codes, flat.new_empty(num_groups(n, group), dtype=torch.float32)


@torch.library.custom_op("dropit::dequantize", mutates_args=())
def dequantize_op(codes: torch.Tensor, scales: torch.Tensor, bits: int, group: int, n: int,
                  dtype: torch.dtype) -> torch.Tensor:
    return kernels.dequantize(codes, scales, bits, group, n, dtype)


@dequantize_op.register_fake
def _(codes, scales, bits, group, n, dtype):
    return scales.new_empty(n, dtype=dtype)


@torch.library.custom_op("dropit::fewbit_encode", mutates_args=())
def fewbit_encode_op(flat: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    return kernels.fewbit_encode(flat.contiguous(), boundaries)


@fewbit_encode_op.register_fake
def _(flat, boundaries):
    return flat.new_empty(packed_numel(flat.numel(), 4), dtype=torch.uint8)


@torch.library.custom_op("dropit::fewbit_grad", mutates_args=())
def fewbit_grad_op(grad: torch.Tensor, codes: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    return kernels.fewbit_grad(grad.contiguous(), codes, levels)


@fewbit_grad_op.register_fake
def _(grad, codes, levels):
    return torch.empty_like(grad)


def quantize(flat: torch.Tensor, bits: int, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`dropit.kernels.quantize`; the custom op for 4 bits inside a compiled CPU graph."""
    return quantize_op(flat, bits, group) if bits == 4 and _opaque(flat) else kernels.quantize(flat, bits, group)


def dequantize(codes, scales, bits: int, group: int, n: int, dtype) -> torch.Tensor:
    """:func:`dropit.kernels.dequantize`; the custom op for 4 bits inside a compiled CPU graph."""
    if bits == 4 and _opaque(scales, dtype):
        return dequantize_op(codes, scales, bits, group, n, dtype)
    return kernels.dequantize(codes, scales, bits, group, n, dtype)


def fewbit_encode(flat: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    """:func:`dropit.kernels.fewbit_encode`, as the custom op inside a compiled CPU graph."""
    return fewbit_encode_op(flat, boundaries) if _opaque(flat) else kernels.fewbit_encode(flat, boundaries)


def fewbit_grad(grad: torch.Tensor, codes: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """:func:`dropit.kernels.fewbit_grad`, as the custom op inside a compiled CPU graph."""
    return fewbit_grad_op(grad, codes, levels) if _opaque(grad) else kernels.fewbit_grad(grad, codes, levels)
