"""An exact ReLU that keeps a 1-bit mask for backward instead of its output.

``nn.ReLU`` saves its output for backward. In a CNN that output is the next
convolution's input, so while the ReLU holds it densely, DropIT dropping
elements of the convolution's copy frees nothing. This ReLU saves
``out > 0`` packed into bits (1/32 of an fp32 tensor) and its gradient is
``grad * (out > 0)``, bit for bit what ``nn.ReLU`` computes.
"""
from __future__ import annotations

import torch

from .storage import pack_bits, unpack_bits


class _MaskedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, inplace: bool):
        if inplace:
            ctx.mark_dirty(x)
            out = x.relu_()
        else:
            out = x.relu()
        ctx.shape = out.shape
        ctx.channels_last = out.dim() == 4 and not out.is_contiguous() and out.is_contiguous(memory_format=torch.channels_last)
        flat = (out.permute(0, 2, 3, 1) if ctx.channels_last else out).reshape(-1)
        # out != 0 rather than out > 0: nn.ReLU's backward passes the gradient at NaN too.
        # .bool() is that test, and on CPU 10x faster than the comparison ne(0).
        positive = flat.bool()
        ctx.save_for_backward(pack_bits(positive))
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (packed,) = ctx.saved_tensors
        n = grad_out.numel()
        positive = unpack_bits(packed, n)  # non-zero bytes where out != 0
        if ctx.channels_last:
            s = ctx.shape
            positive = positive.view(s[0], s[2], s[3], s[1]).permute(0, 3, 1, 2)
        else:
            positive = positive.view(ctx.shape)
        # nn.ReLU's own kernel, on the flags instead of the output: zero where a
        # flag is 0, grad_out where it is positive (3x faster than torch.where)
        return torch.ops.aten.threshold_backward(grad_out, positive, 0), None


def masked_relu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """ReLU whose backward keeps 1 bit per element; gradients equal ``torch.relu``'s."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x.relu_() if inplace else x.relu()
    return _MaskedReLU.apply(x, inplace)
