"""An exact ReLU that keeps a 1-bit mask for backward instead of its output.

``nn.ReLU`` saves its output for backward. In a CNN that output is the next
convolution's input, so while the ReLU holds it densely, DropIT dropping
elements of the convolution's copy frees nothing. This ReLU saves
``out != 0`` packed into bits (1/32 of an fp32 tensor) and its gradient is
``grad * (out != 0)``, bit for bit what ``nn.ReLU`` computes (its backward
passes the gradient at NaN too). The mask is packed and applied in one pass
each way (:func:`dropit.kernels.pack_nonzero`, :func:`dropit.kernels.mask_grad`),
in the output's memory order, so channels_last tensors are not copied.
"""
from __future__ import annotations

import torch

from . import ops
from .record import from_memory_order, memory_order, stored_as


class _MaskedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, inplace: bool):
        if inplace:
            ctx.mark_dirty(x)
            x.relu_()
            out = x  # the dirty input itself, as autograd (and dynamo) require
        else:
            out = x.relu()
        flat, ctx.permutation = memory_order(out)
        ctx.shape = out.shape
        bits = ops.call(ops.pack_nonzero_op, flat)
        stored_as(bits, "1-bit mask")
        ctx.save_for_backward(bits)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (bits,) = ctx.saved_tensors
        perm = ctx.permutation
        g = (grad_out if perm is None else grad_out.permute(perm)).contiguous().view(-1)  # the mask's order
        return from_memory_order(ops.call(ops.mask_grad_op, g, bits), ctx.shape, perm), None


def masked_relu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """ReLU whose backward keeps 1 bit per element; gradients equal ``torch.relu``'s."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x.relu_() if inplace else x.relu()
    return _MaskedReLU.apply(x, inplace)
