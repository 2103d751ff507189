"""Training forward for ``nn.MultiheadAttention`` whose projections cache sparsified inputs.

``nn.MultiheadAttention`` does not call its ``out_proj`` module: it passes the
packed in-projection weight and ``out_proj.weight`` to
``F.multi_head_attention_forward``. Converting the child Linear alone would
therefore change nothing; this forward recomputes the module's math with the
in-projection (q, k, v) and the out-projection as DropIT linears. Attention
itself is ``F.scaled_dot_product_attention`` (or explicit softmax when the
caller asks for the weights), as in PyTorch's own implementation; with
``quantize=`` the fused attention keeps q, k, v and its output quantized
(:mod:`dropit.sdpa`, approximate gradients).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import functional as DF
from . import sdpa
from .quant import bits_of
from .sparsify import DropSpec


def supports(m: nn.MultiheadAttention) -> bool:
    """Whether this forward reproduces the module (no bias_k/bias_v, no add_zero_attn)."""
    return m.bias_k is None and m.bias_v is None and not m.add_zero_attn


def _projections(m: nn.MultiheadAttention, spec: DropSpec, query, key, value):
    """q, k, v (views), the projection outputs they are views of, and for each of q, k, v
    (which output it views, at which element offset)."""
    E = m.embed_dim
    b = m.in_proj_bias
    bq, bk, bv = b.split(E) if b is not None else (None, None, None)
    if m._qkv_same_embed_dim:
        if query is key and key is value:  # self-attention: one input, one record
            qkv = DF.linear(query, m.in_proj_weight, b, spec)
            return (*qkv.split(E, dim=-1), (qkv,), ((0, 0), (0, E), (0, 2 * E)))
        wq, wk, wv = m.in_proj_weight.split(E)
    else:
        wq, wk, wv = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
    q = DF.linear(query, wq, bq, spec)
    if key is value and m._qkv_same_embed_dim:
        kv = DF.linear(key, torch.cat([wk, wv]), None if b is None else torch.cat([bk, bv]), spec)
        return (q, *kv.split(E, dim=-1), (q, kv), ((0, 0), (1, 0), (1, E)))
    k, v = DF.linear(key, wk, bk, spec), DF.linear(value, wv, bv, spec)
    return q, k, v, (q, k, v), ((0, 0), (1, 0), (2, 0))


def _additive_mask(attn_mask, key_padding_mask, N, H, L, S, dtype, device):
    mask = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros(attn_mask.shape, dtype=dtype, device=device).masked_fill_(attn_mask, -math.inf)
        mask = attn_mask.to(dtype).view(N, H, L, S) if attn_mask.dim() == 3 else attn_mask.to(dtype)
    if key_padding_mask is not None:
        if key_padding_mask.dtype == torch.bool:
            kpm = torch.zeros(key_padding_mask.shape, dtype=dtype, device=device).masked_fill_(key_padding_mask, -math.inf)
        else:
            kpm = key_padding_mask.to(dtype)
        kpm = kpm.view(N, 1, 1, S)
        mask = kpm if mask is None else mask + kpm
    return mask


def mha_forward(
    m: nn.MultiheadAttention,
    spec: DropSpec,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    attn_mask: torch.Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
):
    unbatched = query.dim() == 2
    if unbatched:  # (L, E) -> (L, 1, E), sequence first
        query, key, value = _unsqueeze_same(1, query, key, value)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    batch_first = m.batch_first and not unbatched
    N = query.shape[0] if batch_first else query.shape[1]
    L = query.shape[1] if batch_first else query.shape[0]
    S = key.shape[1] if batch_first else key.shape[0]
    E, H = m.embed_dim, m.num_heads
    hd = E // H

    q, k, v, bases, owners = _projections(m, spec, query, key, value)  # (N, T, E) or (T, N, E)
    q, k, v = (sdpa.heads(t, N, T, H, batch_first) for t, T in ((q, L), (k, S), (v, S)))  # (N, H, T, hd)

    mask = _additive_mask(attn_mask, key_padding_mask, N, H, L, S, q.dtype, q.device)
    dropout_p = m.dropout if m.training else 0.0
    weights = None
    if need_weights:
        scores = torch.matmul(q * (1.0 / math.sqrt(hd)), k.transpose(-2, -1))  # (N, H, L, S)
        if mask is not None:
            scores = scores + mask
        weights = scores.softmax(dim=-1)
        out = torch.matmul(F.dropout(weights, dropout_p) if dropout_p > 0 else weights, v)
        if average_attn_weights:
            weights = weights.mean(dim=1)
    else:
        causal = is_causal and mask is None
        if spec.quantize is not None:  # the lossy companion: q, k, v and output kept quantized
            out = sdpa.attention(q, k, v, mask, dropout_p, causal, bits=bits_of(spec.quantize),
                               bases=(bases, owners, (N, H, batch_first)))
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)
    # (N, H, L, hd) -> (N, L, E) or (L, N, E)
    out = out.transpose(1, 2).reshape(N, L, E) if batch_first else out.permute(2, 0, 1, 3).reshape(L, N, E)
    out = DF.linear(out, m.out_proj.weight, m.out_proj.bias, spec)

    if unbatched:
        out = out.squeeze(1)
        weights = weights.squeeze(0) if weights is not None else None
    return out, weights


def _unsqueeze_same(dim, query, key, value):
    """Unsqueeze q, k, v keeping `is` identity between them (self-attention detection)."""
    q = query.unsqueeze(dim)
    k = q if key is query else key.unsqueeze(dim)
    v = k if value is key else (q if value is query else value.unsqueeze(dim))
    return q, k, v
