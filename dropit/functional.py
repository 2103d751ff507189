"""The sparsifying autograd functions: linear and convolution that keep a compact input.

Forward computes the layer's output from the dense input exactly as PyTorch
does. What it saves for backward (through ``ctx.save_for_backward``, so memory
tools see it) is the weight and the compact record of the input. Backward
expands the record just in time and runs PyTorch's own gradient kernels on it:
grad_input is exact (it needs only the weight), grad_weight uses the sparsified
input.

Autocast is resolved before the function runs: inputs and weights are cast to
the autocast dtype here, the op itself runs with autocast off, so the cached
values have the dtype autograd would have cached and backward sees the same
dtypes whatever autocast state it is called in.

The record is made after the output: under ``torch.compile`` the matmul then
realizes the input first and the record's custom op reads that same buffer;
in the other order inductor wrote an unrealized input (a GELU's output, say)
twice, once for each consumer.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .record import Layout, Record
from .sparsify import DropSpec, expand, sparsify


_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu", "xla")


def _no_autocast(device_type: str):
    if device_type not in _AUTOCAST_DEVICES:  # meta tensors: nothing to switch off
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


def _autocast_cast(device_type: str, *tensors):
    if device_type not in _AUTOCAST_DEVICES or not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors)


def _save_input(ctx, x: torch.Tensor, spec: DropSpec, *others: torch.Tensor) -> None:
    if ctx.needs_input_grad[1]:  # the weight gradient is what needs the input
        record = sparsify(x, spec)
        ctx.layout = record.layout
        ctx.save_for_backward(*others, *record.saved)
    else:
        ctx.layout = Layout("absent", x.shape, x.dtype, None, x.numel(), 0)
        ctx.save_for_backward(*others)


def _load_input(ctx, weight: torch.Tensor, saved: Sequence[torch.Tensor]) -> torch.Tensor:
    layout: Layout = ctx.layout
    if layout.kind == "absent":  # shape-only stand-in: the weight needs no gradient
        return weight.new_zeros((), dtype=layout.dtype).expand(layout.shape)
    return expand(Record.from_saved(saved, layout))


class _SparseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, spec: DropSpec):
        ctx.has_bias = bias is not None
        out = F.linear(x, weight, bias)
        _save_input(ctx, x, spec, weight)  # after the matmul: see the module docstring
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        weight, *saved = ctx.saved_tensors
        with _no_autocast(grad_out.device.type):
            grad_x = grad_w = grad_b = None
            g2d = grad_out.reshape(-1, grad_out.shape[-1])  # (N, out)
            if ctx.needs_input_grad[0]:
                grad_x = grad_out.matmul(weight)
            if ctx.needs_input_grad[1]:
                x = _load_input(ctx, weight, saved)
                grad_w = g2d.t().mm(x.reshape(-1, x.shape[-1]))
                del x
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_b = g2d.sum(0)
        return grad_x, grad_w, grad_b, None


class _SparseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, spec: DropSpec, stride, padding, dilation, transposed, output_padding, groups):
        out = torch.ops.aten.convolution(
            x, weight, bias, stride, padding, dilation, transposed, output_padding, groups
        )
        ctx.conv_args = (stride, padding, dilation, transposed, output_padding, groups)
        ctx.bias_sizes = [out.shape[1]] if bias is not None else None
        _save_input(ctx, x, spec, weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        weight, *saved = ctx.saved_tensors
        with _no_autocast(grad_out.device.type):
            x = _load_input(ctx, weight, saved)
            mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.bias_sizes is not None and ctx.needs_input_grad[2]]
            grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_out, x, weight, ctx.bias_sizes, *ctx.conv_args, mask
            )
        return grad_x, grad_w, grad_b, None, None, None, None, None, None, None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, spec: DropSpec) -> torch.Tensor:
    """``F.linear`` that caches a sparsified input for the weight gradient."""
    x, weight, bias = _autocast_cast(x.device.type, x, weight, bias)
    with _no_autocast(x.device.type):
        return _SparseLinear.apply(x, weight, bias, spec)


def convolution(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    spec: DropSpec,
    *,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    transposed: bool = False,
    output_padding: Sequence[int] | None = None,
    groups: int = 1,
) -> torch.Tensor:
    """Any convolution (1d/2d/3d, transposed, grouped) caching a sparsified input."""
    x, weight, bias = _autocast_cast(x.device.type, x, weight, bias)
    output_padding = list(output_padding) if output_padding is not None else [0] * len(stride)
    with _no_autocast(x.device.type):
        return _SparseConv.apply(
            x, weight, bias, spec, list(stride), list(padding), list(dilation), transposed, output_padding, groups
        )
