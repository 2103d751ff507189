"""Lossy companions of GELU and SiLU: what they keep for backward, quantized.

``nn.GELU`` and ``nn.SiLU`` save their input (in a ViT's MLP, 4x the model
width). With ``quantize="int8"`` this keeps the input as per-group int8 and
backward runs PyTorch's own ``gelu_backward`` / ``silu_backward`` on the
dequantized input; with ``"int4"`` it keeps a 4-bit code of the derivative
(:func:`dropit.quant.encode_derivative`: which of 15 bins x fell in) and
backward multiplies the gradient by that bin's derivative. The output is
exact either way; the gradient is approximate. Hugging Face's own GELU and
SiLU classes (:mod:`dropit.hf_modules`) are converted alike and run their own
forward, so their outputs stay bit for bit too.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import hf_modules, quant


def _apply(function: str, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    if function == "silu":
        return F.silu(x, inplace=inplace)
    return F.gelu(x, approximate=function.removeprefix("gelu_"))


class _QuantActivation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, function: str, level: str, inplace: bool, module):
        record = quant.quantize(x, 8) if level == "int8" else quant.encode_derivative(x, function)
        out = _apply(function, x, inplace) if module is None else type(module).forward(module, x)
        if inplace:
            ctx.mark_dirty(x)
        ctx.layout, ctx.function = record.layout, function
        ctx.save_for_backward(*record.saved)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        record = quant.QRecord.from_saved(ctx.saved_tensors, ctx.layout)
        if record.layout.kind == "fewbit4":
            return quant.derivative_grad(grad_out, record, ctx.function), None, None, None, None
        x = quant.dequantize(record)
        if ctx.function == "silu":
            grad = torch.ops.aten.silu_backward(grad_out, x)
        else:
            grad = torch.ops.aten.gelu_backward(grad_out, x, approximate=ctx.function.removeprefix("gelu_"))
        return grad, None, None, None, None


def function_of(m: nn.Module) -> str:
    """The derivative table's name for a GELU or SiLU module (torch's or a recognised HF one)."""
    if isinstance(m, nn.SiLU):
        return "silu"
    if isinstance(m, nn.GELU):
        return f"gelu_{m.approximate}"
    return hf_modules.hf_function(m)


def activation_forward(m: nn.Module, spec, x: torch.Tensor) -> torch.Tensor:
    """``m(x)`` for ``nn.GELU`` / ``nn.SiLU`` (or an HF GELU / SiLU) keeping a quantized input or
    derivative code."""
    if not (torch.is_grad_enabled() and x.requires_grad) or not x.is_floating_point():
        return type(m).forward(m, x)
    inplace = isinstance(m, nn.SiLU) and m.inplace
    own = None if isinstance(m, (nn.GELU, nn.SiLU)) else m  # HF modules: their own forward, bit for bit
    return _QuantActivation.apply(x, function_of(m), spec.quantize, inplace, own)
