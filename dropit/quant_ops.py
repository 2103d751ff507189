"""The quantization kernels as ``torch.library`` custom ops, so compiled CPU graphs run the fused C kernels.

    codes, scales = quant_ops.quantize(flat, 8, 64)     # what dropit.quant calls; eager or compiled
    flat = quant_ops.dequantize(codes, scales, 8, 64, n, torch.float32)

In eager mode these are :mod:`dropit.kernels`' functions (the C kernels on
CPU). Under ``torch.compile`` the kernels fall back to the torch reference for
inductor to compile; on CPU, where the C library is loaded, a compiled graph
calls them instead as opaque custom ops (``torch.ops.dropit.quantize``, ...)
with fake implementations that give the static output shapes, as
:mod:`dropit.ops` does for the drop. Measured on a busy two-core machine (so
indicative; ``benchmarks/profile_compiled.py`` prints the figures for a quiet
one), one thread:

- the compiled CIFAR ResNet-18 step (batch 32) with DropIT + int8 spent about
  2.0 s more than compiled plain outside the convolutions with inductor's code
  of the reference (1.83 s of it inside inductor's fused kernels: the group
  absmax fused with BatchNorm's forward), and about 1.1 s more with the C
  kernels as custom ops (0.34 s in them), in interleaved profiled steps;
- alone, on 2M elements (min of 30 calls): int8 quantize 1.6 ms compiled
  reference against 3.4 ms C, dequantize 1.9 / 2.6 ms; but int4 quantize
  9.9 / 6.7 ms, dequantize 19 / 2.2 ms, few-bit encode 195 / 2.6 ms and
  few-bit grad 15 / 1.3 ms. So even where inductor's int8 kernel is faster on
  its own, inside the model it costs more.

On CUDA the reference stays (inductor makes Triton kernels of it). The outputs
are the same bit for bit either way (the C kernels match the reference; tests).
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
    """:func:`dropit.kernels.quantize`, as the custom op inside a compiled CPU graph."""
    return quantize_op(flat, bits, group) if _opaque(flat) else kernels.quantize(flat, bits, group)


def dequantize(codes, scales, bits: int, group: int, n: int, dtype) -> torch.Tensor:
    """:func:`dropit.kernels.dequantize`, as the custom op inside a compiled CPU graph."""
    if _opaque(scales, dtype):
        return dequantize_op(codes, scales, bits, group, n, dtype)
    return kernels.dequantize(codes, scales, bits, group, n, dtype)


def fewbit_encode(flat: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    """:func:`dropit.kernels.fewbit_encode`, as the custom op inside a compiled CPU graph."""
    return fewbit_encode_op(flat, boundaries) if _opaque(flat) else kernels.fewbit_encode(flat, boundaries)


def fewbit_grad(grad: torch.Tensor, codes: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """:func:`dropit.kernels.fewbit_grad`, as the custom op inside a compiled CPU graph."""
    return fewbit_grad_op(grad, codes, levels) if _opaque(grad) else kernels.fewbit_grad(grad, codes, levels)
