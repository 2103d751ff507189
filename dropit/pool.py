"""An exact MaxPool2d that keeps one byte per output for backward instead of its input.

``nn.MaxPool2d`` saves its whole input and int64 argmax indices: in an ImageNet
ResNet that is the stem's largest activation (the ReLU output it pools) plus
8 bytes per pooled element. Backward needs neither the input's values nor
absolute indices: which element of its window each output took is enough.
This pool keeps that window offset as uint8 (kernels up to 16x16) and rebuilds
the plane indices in backward for PyTorch's own max-pool backward kernel, so
its gradients equal ``nn.MaxPool2d``'s bit for bit.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .record import stored_as


def _origins(out_h: int, out_w: int, stride, padding, device):
    h0 = (torch.arange(out_h, device=device) * stride[0] - padding[0]).view(-1, 1)  # (OH, 1)
    w0 = (torch.arange(out_w, device=device) * stride[1] - padding[1]).view(1, -1)  # (1, OW)
    return h0, w0


class _CompactMaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation, ceil_mode):
        out, idx = torch.ops.aten.max_pool2d_with_indices(x, kernel, stride, padding, dilation, ceil_mode)
        W = x.shape[-1]
        h0, w0 = _origins(out.shape[-2], out.shape[-1], stride, padding, x.device)
        ih = torch.div(idx, W, rounding_mode="floor")
        local_h = torch.div(ih - h0, dilation[0], rounding_mode="floor")
        local_w = torch.div(idx - ih * W - w0, dilation[1], rounding_mode="floor")
        offsets = (local_h * kernel[1] + local_w).to(torch.uint8)
        stored_as(offsets, "1-byte offsets")
        ctx.save_for_backward(offsets)
        ctx.args = (kernel, stride, padding, dilation, ceil_mode)
        ctx.input_shape, ctx.input_dtype = x.shape, x.dtype
        ctx.channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (offsets,) = ctx.saved_tensors
        kernel, stride, padding, dilation, ceil_mode = ctx.args
        off = offsets.long()
        h0, w0 = _origins(off.shape[-2], off.shape[-1], stride, padding, off.device)
        ih = h0 + torch.div(off, kernel[1], rounding_mode="floor") * dilation[0]
        iw = w0 + (off % kernel[1]) * dilation[1]
        idx = ih * ctx.input_shape[-1] + iw
        shape_only = grad_out.new_zeros((), dtype=ctx.input_dtype).expand(ctx.input_shape)
        grad_in = torch.ops.aten.max_pool2d_with_indices_backward(
            grad_out, shape_only, kernel, stride, padding, dilation, ceil_mode, idx
        )
        if ctx.channels_last:
            grad_in = grad_in.contiguous(memory_format=torch.channels_last)
        return grad_in, None, None, None, None, None


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def supports(m: nn.MaxPool2d) -> bool:
    """Whether the compact pool reproduces this module (no index output, window <= 256)."""
    k = _pair(m.kernel_size)
    return not m.return_indices and k[0] * k[1] <= 256


def compact_max_pool2d(x: torch.Tensor, m: nn.MaxPool2d) -> torch.Tensor:
    """``m(x)`` keeping one byte per output for backward."""
    if not (torch.is_grad_enabled() and x.requires_grad) or x.dim() not in (3, 4):
        return nn.MaxPool2d.forward(m, x)
    stride = _pair(m.stride if m.stride is not None else m.kernel_size)
    return _CompactMaxPool2d.apply(
        x, _pair(m.kernel_size), stride, _pair(m.padding), _pair(m.dilation), m.ceil_mode
    )
