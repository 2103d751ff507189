"""A lossy companion of scaled-dot-product attention: the fused kernel keeping q, k, v and its output quantized.

PyTorch's fused attention saves q, k, v, its output and a per-row logsumexp
for backward. This one calls the same fused kernel that
``F.scaled_dot_product_attention`` would pick (so the output is the same bit
for bit), keeps the logsumexp exact and q, k, v and the output as per-group
integer codes (:mod:`dropit.quant`), and runs the kernel's own backward on
the dequantized tensors. The gradients are approximate.

Covered: the CPU flash kernel, and the CUDA flash kernel (fp16/bf16, no
mask); attention dropout, a mask that needs a gradient, and every other kernel
(math, memory-efficient, cuDNN) run the plain ``F.scaled_dot_product_attention``.
The CUDA path has not run on a GPU yet (``tests/test_cuda.py`` holds its check).

In eager mode q, k and v that are views of one tensor (the packed in-projection
of self-attention) are stored once: each distinct storage is quantized whole,
and the views are rebuilt from it with their own sizes and strides. Under
``torch.compile`` each is quantized as its own contiguous copy, which the
compiler fuses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import quant
from .functional import _autocast_cast, _no_autocast

_FLASH = 1  # torch.nn.attention.SDPBackend.FLASH_ATTENTION.value


def kernel_for(q, k, v, attn_mask, dropout_p: float, is_causal: bool, scale) -> str | None:
    """The fused kernel this module reproduces for these arguments, or None (run the plain SDPA)."""
    if dropout_p > 0.0 or (attn_mask is not None and attn_mask.requires_grad):
        return None
    choice = torch._fused_sdp_choice(q, k, v, attn_mask, dropout_p, is_causal, scale=scale)
    if choice != _FLASH:
        return None
    if q.device.type == "cpu":
        return "cpu_flash"
    if q.device.type == "cuda" and attn_mask is None:
        return "cuda_flash"
    return None


def _storage_flat(t: torch.Tensor) -> torch.Tensor:
    """A 1-D tensor over t's whole storage (what t keeps alive)."""
    n = t.untyped_storage().nbytes() // t.element_size()
    return t.new_empty(0).set_(t.untyped_storage(), 0, (n,), (1,))


def _quantize_views(tensors, bits: int):
    """Records of the tensors, one per distinct storage in eager mode: (records, views).

    ``views[i]`` is (record index, size, stride, storage offset), stride None
    for a contiguous copy (the compiled path)."""
    records, views = [], []
    if torch.compiler.is_compiling():
        for t in tensors:
            records.append(quant.quantize(t.contiguous(), bits))
            views.append((len(records) - 1, tuple(t.shape), None, 0))
        return records, views
    by_storage: dict[int, int] = {}
    for t in tensors:
        key = t.untyped_storage().data_ptr()
        if key not in by_storage:
            by_storage[key] = len(records)
            records.append(quant.quantize(_storage_flat(t), bits))
        views.append((by_storage[key], tuple(t.shape), tuple(t.stride()), t.storage_offset()))
    return records, views


def _rebuild(dense, view):
    index, size, stride, offset = view
    flat = dense[index]
    return flat.view(size) if stride is None else flat.as_strided(size, stride, offset)


class _QuantSDPA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, attn_mask, is_causal: bool, scale, kernel: str, bits: int):
        extra: tuple = ()
        if kernel == "cpu_flash":
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                q, k, v, 0.0, is_causal, attn_mask=attn_mask, scale=scale
            )
        else:  # "cuda_flash"
            out, lse, cum_q, cum_k, max_q, max_k, seed, offset, _ = torch.ops.aten._scaled_dot_product_flash_attention(
                q, k, v, 0.0, is_causal, False, scale=scale
            )
            extra, ctx.max_qk = (cum_q, cum_k, seed, offset), (max_q, max_k)
        records, ctx.views = _quantize_views((q, k, v, out), bits)
        ctx.layouts = [r.layout for r in records]
        ctx.counts = [len(r.saved) for r in records]
        ctx.kernel, ctx.is_causal, ctx.scale = kernel, is_causal, scale
        ctx.save_for_backward(*(t for r in records for t in r.saved), lse, attn_mask, *extra)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        saved = list(ctx.saved_tensors)
        dense = []
        for layout, count in zip(ctx.layouts, ctx.counts):
            dense.append(quant.dequantize(quant.QRecord.from_saved(saved[:count], layout)))
            del saved[:count]
        lse, attn_mask, *extra = saved
        q, k, v, out = (_rebuild(dense, view) for view in ctx.views)
        with _no_autocast(grad_out.device.type):
            if ctx.kernel == "cpu_flash":
                gq, gk, gv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                    grad_out, q, k, v, out, lse, 0.0, ctx.is_causal, attn_mask=attn_mask, scale=ctx.scale
                )
            else:
                cum_q, cum_k, seed, offset = extra
                gq, gk, gv = torch.ops.aten._scaled_dot_product_flash_attention_backward(
                    grad_out, q, k, v, out, lse, cum_q, cum_k, *ctx.max_qk, 0.0, ctx.is_causal, seed, offset,
                    scale=ctx.scale,
                )
        return gq, gk, gv, None, None, None, None, None


def attention(q, k, v, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False, scale=None, *, bits: int):
    """``F.scaled_dot_product_attention(q, k, v, ...)`` keeping q, k, v and the output quantized."""
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))):
        return F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale=scale)
    q, k, v, attn_mask = _autocast_cast(q.device.type, q, k, v, attn_mask)
    with _no_autocast(q.device.type):
        kernel = kernel_for(q, k, v, attn_mask, dropout_p, is_causal, scale)
        if kernel is None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale=scale)
        return _QuantSDPA.apply(q, k, v, attn_mask, is_causal, scale, kernel, bits)
