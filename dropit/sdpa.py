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
The CUDA path has not run on a GPU yet (``tests/test_quant_cuda.py`` holds its check).

q, k and v that are views of one tensor (the packed in-projection of
self-attention, which ``nn.MultiheadAttention`` passes as ``bases``) are stored
once: that tensor is quantized in its memory order, and backward rebuilds the
same views from it (views only: no ``as_strided``, which inductor does not
reproduce on intermediates). The output is quantized in its memory order too,
so eager and compiled runs keep the same codes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import quant
from .functional import _autocast_cast, _no_autocast

_FLASH = 1  # torch.nn.attention.SDPBackend.FLASH_ATTENTION.value


@torch.compiler.assume_constant_result  # static per compiled graph: dtypes, shapes, device, flags
def _sdp_choice(q, k, v, attn_mask, dropout_p: float, is_causal: bool, scale) -> int:
    return torch._fused_sdp_choice(q, k, v, attn_mask, dropout_p, is_causal, scale=scale)


def kernel_for(q, k, v, attn_mask, dropout_p: float, is_causal: bool, scale) -> str | None:
    """The fused kernel this module reproduces for these arguments, or None (run the plain SDPA)."""
    if dropout_p > 0.0 or (attn_mask is not None and attn_mask.requires_grad):
        return None
    if q.is_meta:  # estimates (dropit.estimate_cache) assume the fused kernel, whose sizes CPU and CUDA share
        return "cpu_flash"
    if _sdp_choice(q, k, v, attn_mask, dropout_p, is_causal, scale) != _FLASH:
        return None
    if q.device.type == "cpu":
        return "cpu_flash"
    if q.device.type == "cuda" and attn_mask is None and q.shape[-1] % 8 == 0:  # else F.sdpa pads the head dim
        return "cuda_flash"
    return None


def heads(t: torch.Tensor, N: int, T: int, H: int, batch_first: bool) -> torch.Tensor:
    """A projection (N, T, E) or (T, N, E) as (N, H, T, E // H): a view."""
    hd = t.shape[-1] // H
    if batch_first:
        return t.view(N, T, H, hd).transpose(1, 2)
    return t.view(T, N, H, hd).permute(1, 2, 0, 3)


def _sources(q, k, v, bases):
    """The dense tensors to quantize, and for each of q, k, v how to rebuild it from them."""
    if bases is None:  # each its own source, quantized in its memory order (copied where not dense)
        return [q, k, v], [("own", i) for i in range(3)]
    sources, owners, (N, H, batch_first) = bases
    E = q.shape[1] * q.shape[3]
    views = [("heads", i, offset, E, t.shape[2], N, H, batch_first) for t, (i, offset) in zip((q, k, v), owners)]
    return list(sources), views


def _rebuild(dense, view):
    """View spec -> tensor, from the dequantized sources (views only: no copy)."""
    if view[0] == "own":
        return dense[view[1]]
    _, index, offset, E, T, N, H, batch_first = view
    return heads(dense[index].narrow(-1, offset, E), N, T, H, batch_first)


class _QuantSDPA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, attn_mask, is_causal: bool, scale, kernel: str, bits: int, views, *sources):
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
        records = [quant.quantize(t, bits) for t in (*sources, out)]  # the kernels' output is dense: no copy
        ctx.views = [*views, ("own", len(sources))]
        ctx.layouts = [r.layout for r in records]
        ctx.counts = [len(r.saved) for r in records]
        ctx.kernel, ctx.is_causal, ctx.scale, ctx.num_sources = kernel, is_causal, scale, len(sources)
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
        return (gq, gk, gv) + (None,) * (6 + ctx.num_sources)


def attention(
    q, k, v, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False, scale=None, *, bits: int, bases=None
):
    """``F.scaled_dot_product_attention(q, k, v, ...)`` keeping q, k, v and the output quantized.

    ``bases``: ``(tensors, owners, (N, H, batch_first))``: contiguous
    projections (N, T, *) or (T, N, *) that q, k, v are :func:`heads` views of,
    quantized once each (self-attention's packed in-projection); ``owners[i]``
    is (which tensor q, k, v[i] comes from, its offset in the last dim).
    Without it each of q, k, v is its own source (copied where not dense).
    """
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))):
        return F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale=scale)
    cast = _autocast_cast(q.device.type, q, k, v, attn_mask)
    if any(a is not b for a, b in zip(cast[:3], (q, k, v))):
        bases = None  # autocast made new tensors: they are no longer views of the bases
    q, k, v, attn_mask = cast
    if attn_mask is not None and attn_mask.dtype == torch.bool:  # True = take part, as F.sdpa reads it
        attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~attn_mask, -torch.inf)
    with _no_autocast(q.device.type):
        kernel = kernel_for(q, k, v, attn_mask, dropout_p, is_causal, scale)
        if kernel is None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale=scale)
        sources, views = _sources(q, k, v, bases)
        return _QuantSDPA.apply(q, k, v, attn_mask, is_causal, scale, kernel, bits, views, *sources)
