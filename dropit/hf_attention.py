"""Hugging Face attention kept compressed, through transformers' own attention interface.

transformers computes attention in each model's own code and then calls the
function registered under ``config._attn_implementation`` in its
``AttentionInterface``. ``to_dropit(model, quantize="int8")`` on a
transformers model whose implementation is ``"sdpa"`` (transformers' default)
registers this module's function under ``"dropit_int8"`` (or
``"dropit_int4"``), with the sdpa mask function under the same name in
``AttentionMaskInterface``, and selects it on the model's config;
:func:`dropit.restore` selects ``"sdpa"`` again. No model code is patched, and
transformers is imported only when a transformers model is converted.

In training (module in training mode, gradients on), the function keeps for
backward q, k and v as per-group int8 (or int4) codes (:mod:`dropit.quant`),
the output likewise, the logsumexp exact, and the model's mask as it was given
(a boolean mask is one storage shared by every layer). Everything else
(evaluation, ``no_grad``) runs transformers' own ``sdpa`` function.

- Without attention dropout it calls the fused CPU kernel that
  ``F.scaled_dot_product_attention`` picks for the same arguments, so the
  output is the same bit for bit; backward is that kernel's own backward on
  the dequantized tensors. Grouped-query attention passes k and v with their
  own (fewer) heads: nothing repeated is made or kept.
- With dropout p > 0 (GPT-2's and BERT's defaults) PyTorch's SDPA on the CPU
  takes its unfused path, which keeps the (T, T) probabilities and the mask.
  Here attention runs blockwise over rows of queries, and the dropout mask is a
  hash of each element's position and a seed drawn from torch's generator
  (so ``torch.manual_seed`` reproduces it); backward recomputes the
  probabilities from q, k and the exact logsumexp and regenerates the mask
  from the saved seed, block by block. Nothing of size (T, T) is kept.
  The dropout draws differ from PyTorch's (another generator), with the same
  law: each probability kept with probability 1 - p and scaled by 1 / (1 - p).

Arguments it does not cover fall back, with one warning per model and reason,
to transformers' own function: ``output_attentions=True`` to the eager
function of the model's own modeling file (the one that returns the weights),
everything else (a mask that is not a tensor or needs a gradient,
``position_bias``, ``softcap``, attention sinks, a device other than the CPU
without dropout) to ``sdpa``. The gradients are approximate (from 8- or 4-bit
q, k, v and output); see ``docs/lossy-companions.md``.
"""
from __future__ import annotations

import sys
import warnings

import torch
from torch.autograd.function import once_differentiable

from . import quant
from .functional import _autocast_cast, _no_autocast
from .record import stored_as

REPLACES = "sdpa"  # the implementation this one reproduces bit for bit (transformers' default)
NAMES = {"int8": "dropit_int8", "int4": "dropit_int4"}
MIN_VERSION = "4.53"  # transformers' AttentionInterface (4.51) and AttentionMaskInterface (4.53)
BLOCK = 128  # query rows per block in the dropout path
_FLASH = 1  # torch.nn.attention.SDPBackend.FLASH_ATTENTION.value
_warned: set[tuple[int, str]] = set()
_OWN: dict[str, object] = {}  # transformers' own functions, looked up at conversion


# ---------------------------------------------------------------- conversion

def _is_transformers(module: torch.nn.Module) -> bool:
    return any(c.__module__.startswith("transformers.") for c in type(module).__mro__)


def _owners(model: torch.nn.Module) -> dict:
    """{id(config): (config, the outermost module holding it)} for the transformers models inside ``model``."""
    seen: dict[int, tuple] = {}
    for m in model.modules():
        config = getattr(m, "config", None)
        if config is not None and hasattr(config, "_attn_implementation") and _is_transformers(m):
            seen.setdefault(id(config), (config, m))
    return seen


def _configs(model: torch.nn.Module) -> list:
    """The distinct configs of the transformers models inside ``model`` (the root included)."""
    return [config for config, _ in _owners(model).values()]


def _uses_interface(module) -> bool:
    """Whether the model calls its attention through the AttentionInterface (transformers' own test)."""
    check = getattr(type(module), "_can_set_attn_implementation", None)
    return check is None or bool(check())


def _interfaces():
    """transformers' (AttentionInterface, AttentionMaskInterface, sdpa function), or ValueError naming the version."""
    try:
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface
    except ImportError as error:
        version = getattr(sys.modules.get("transformers"), "__version__", "unknown")
        raise ValueError(
            f"to_dropit(quantize=...) keeps a transformers model's attention compressed through transformers' "
            f"AttentionInterface and AttentionMaskInterface, which need transformers >= {MIN_VERSION}; "
            f"this is transformers {version} ({error}). Upgrade (pip install 'transformers>={MIN_VERSION}') or "
            f"convert without quantize=. The model was not changed."
        ) from None
    return AttentionInterface, AttentionMaskInterface, ALL_ATTENTION_FUNCTIONS, ALL_MASK_ATTENTION_FUNCTIONS


def converted(model: torch.nn.Module) -> bool:
    return any(getattr(c, "_attn_implementation", None) in NAMES.values() for c in _configs(model))


def plan(model: torch.nn.Module, quantize: str | None) -> list:
    """The configs whose attention :func:`apply` switches; raises (changing nothing) where it cannot."""
    if quantize is None:
        return []
    configs = []
    for config, owner in _owners(model).values():
        if config._attn_implementation != REPLACES:
            continue
        if not _uses_interface(owner):  # its own code picks attention by name: a new name would change it
            warnings.warn(f"{type(owner).__name__} does not call its attention through transformers' "
                          f"AttentionInterface: its attention is left as it is (kept dense)")
            continue
        configs.append(config)
    if configs:
        _interfaces()
    return configs


def apply(configs: list, quantize: str) -> None:
    if not configs:
        return
    attention_interface, mask_interface, functions, masks = _interfaces()
    name = NAMES[quantize]
    _OWN[REPLACES] = functions[REPLACES]
    capturing = sys.modules.get("transformers.utils.output_capturing")  # where models record their attentions
    _OWN["collector"] = getattr(capturing, "_active_collector", None)
    attention_interface.register(name, _FUNCTIONS[quantize])
    mask_interface.register(name, masks[REPLACES])  # the same masks sdpa gets
    for config in configs:
        _warned.difference_update({w for w in _warned if w[0] == id(config)})
        config._attn_implementation = name


def restore(model: torch.nn.Module) -> None:
    for config in _configs(model):
        if config._attn_implementation in NAMES.values():
            config._attn_implementation = REPLACES


# ---------------------------------------------------------------- the attention function

def _warn_once(module, reason: str) -> None:
    key = (id(getattr(module, "config", module)), reason)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"dropit attention: {reason}; this call runs transformers' own attention (kept dense)",
                      stacklevel=3)


def _attentions_requested(kwargs) -> bool:
    """``output_attentions=True``: passed in (LLaMA, BERT), or asked of transformers' output collector (GPT-2)."""
    if kwargs.get("output_attentions"):
        return True
    collector = _OWN.get("collector")
    collected = collector.get() if collector is not None else None
    return isinstance(collected, dict) and "attentions" in collected


def _unsupported(query, attention_mask, dropout: float, kwargs) -> str | None:
    if _attentions_requested(kwargs):
        return "output_attentions=True"
    for name in ("position_bias", "softcap", "s_aux", "sinks", "head_mask"):
        if kwargs.get(name) is not None:
            return f"{name} is not supported"
    if attention_mask is not None and not isinstance(attention_mask, torch.Tensor):
        return f"a {type(attention_mask).__name__} mask is not supported"
    if isinstance(attention_mask, torch.Tensor) and attention_mask.requires_grad:
        return "a mask that needs a gradient is not supported"
    if dropout == 0.0 and query.device.type not in ("cpu", "meta"):  # meta: size estimates
        return f"without dropout only the CPU fused kernel is covered, not {query.device.type}"
    return None


def _eager_mask(module, query, key, mask, is_causal):
    """The sdpa-style mask (boolean, or None meaning causal where the module is) as eager's additive one."""
    low = torch.finfo(query.dtype).min
    if mask is None:
        causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
        if not causal or query.shape[2] == 1:
            return None
        L, S = query.shape[2], key.shape[2]
        mask = torch.ones(L, S, dtype=torch.bool, device=query.device).tril(S - L)[None, None]
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=query.dtype, device=query.device).masked_fill_(~mask, low)
    return mask


def _eager_of(module):
    return getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)


@torch.compiler.assume_constant_result  # static per compiled graph: dtypes, shapes, device, flags
def _sdp_choice(q, k, v, mask, is_causal: bool, scale, gqa: bool) -> int:
    return torch._fused_sdp_choice(q, k, v, mask, 0.0, is_causal, scale=scale, enable_gqa=gqa)


def _make(level: str):
    bits = quant.bits_of(level)

    def dropit_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                         is_causal=None, **kwargs):
        own = _OWN[REPLACES]
        train = module.training and torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
        if not train:
            return own(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                       is_causal=is_causal, **kwargs)
        reason = _unsupported(query, attention_mask, dropout, kwargs)
        if reason is not None:
            eager = _eager_of(module) if reason == "output_attentions=True" else None
            _warn_once(module, reason + (" (falls back to the model's eager attention)" if eager else ""))
            if eager is None:
                return own(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                           is_causal=is_causal, **kwargs)
            mask = _eager_mask(module, query, key, attention_mask, is_causal)
            return eager(module, query, key, value, mask, dropout=dropout, scaling=scaling, **kwargs)
        q_len, kv_len = query.shape[2], key.shape[2]
        causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
        causal = bool(q_len > 1 and attention_mask is None and causal)  # as transformers' sdpa decides
        if causal and kv_len > q_len:
            key, value = key[:, :, :q_len], value[:, :, :q_len]
        query, key, value = _autocast_cast(query.device.type, query, key, value)
        with _no_autocast(query.device.type):
            if dropout > 0.0:
                seed = torch.randint(0, 2**62, (), dtype=torch.int64)  # torch's generator: manual_seed replays it
                out = _BlockwiseDropout.apply(query, key, value, attention_mask, causal, scaling, float(dropout),
                                              seed.to(query.device), bits)
            else:
                gqa = query.shape[1] != key.shape[1]
                mask = _additive(attention_mask, query.dtype)
                if not query.is_meta and _sdp_choice(query, key, value, mask, causal, scaling, gqa) != _FLASH:
                    _warn_once(module, "these arguments do not take the fused kernel")
                    return own(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                               is_causal=is_causal, **kwargs)
                out = _FlashQuant.apply(query, key, value, attention_mask, causal, scaling, bits)
        return out.transpose(1, 2).contiguous(), None

    dropit_attention.__qualname__ = dropit_attention.__name__ = f"dropit_attention_{level}"
    return dropit_attention


def _additive(mask, dtype):
    """A boolean mask (True = take part) as the additive float mask the kernels read; others as they are."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, -torch.inf)


def _quantized(ctx, tensors, bits):
    """The tensors to save for q, k, v and out: their codes, or (``bits`` None, for tests) themselves."""
    if bits is None:
        ctx.layouts, ctx.counts = [None] * len(tensors), [1] * len(tensors)
        return list(tensors)
    if torch.compiler.is_compiling():  # inductor may give intermediates other strides than eager: one layout
        tensors = [t.contiguous() for t in tensors]
    records = [quant.quantize(t, bits) for t in tensors]
    ctx.layouts = [r.layout for r in records]
    ctx.counts = [len(r.saved) for r in records]
    return [t for r in records for t in r.saved]


def _dequantized(ctx, saved):
    saved, dense = list(saved), []
    for layout, count in zip(ctx.layouts, ctx.counts):
        dense.append(saved[0] if layout is None else quant.dequantize(quant.QRecord.from_saved(saved[:count], layout)))
        del saved[:count]
    return dense, saved


class _FlashQuant(torch.autograd.Function):
    """The CPU flash kernel, keeping int q, k, v and output, the exact logsumexp and the mask as given."""

    @staticmethod
    def forward(ctx, q, k, v, mask, is_causal: bool, scale, bits: int):
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, is_causal, attn_mask=_additive(mask, q.dtype), scale=scale
        )
        saved = _quantized(ctx, (q, k, v, out), bits)
        stored_as(lse, "logsumexp")
        ctx.is_causal, ctx.scale = is_causal, scale
        ctx.save_for_backward(*saved, lse, mask)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (q, k, v, out), (lse, mask) = _dequantized(ctx, ctx.saved_tensors)
        with _no_autocast(grad_out.device.type):
            gq, gk, gv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                grad_out, q, k, v, out, lse, 0.0, ctx.is_causal, attn_mask=_additive(mask, q.dtype), scale=ctx.scale
            )
        return gq, gk, gv, None, None, None, None


# ---------------------------------------------------------------- dropout, blockwise

_M1, _M2, _M3 = (c - 2**64 for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))  # as int64


def _shr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def uniform24(index: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """A 24-bit uniform integer per int64 ``index``, a hash of (seed, index): splitmix64's mixing function."""
    z = index * _M1 + seed
    z = (z ^ _shr(z, 30)) * _M2
    z = (z ^ _shr(z, 27)) * _M3
    z = z ^ _shr(z, 31)
    return _shr(z, 40)


def keep_mask(seed, p: float, B: int, H: int, L: int, S: int, start: int, stop: int, device) -> torch.Tensor:
    """The dropout keep mask (B, H, stop - start, S) of query rows [start, stop): True where kept.

    A custom op, opaque to ``torch.compile``: inductor folds the hash's 64-bit constants into index
    arithmetic and overflows int64 when it prints them (seen compiling BERT with attention dropout)."""
    return keep_mask_op(seed, p, B, H, L, S, start, stop, torch.device(device))


@torch.library.custom_op("dropit::dropout_keep_mask", mutates_args=())
def keep_mask_op(seed: torch.Tensor, p: float, B: int, H: int, L: int, S: int, start: int, stop: int,
                 device: torch.device) -> torch.Tensor:
    return _keep_mask(seed, p, B, H, L, S, start, stop, device)


@keep_mask_op.register_fake
def _(seed, p, B, H, L, S, start, stop, device):
    return torch.empty((B, H, stop - start, S), dtype=torch.bool, device=device)


def _keep_mask(seed, p: float, B: int, H: int, L: int, S: int, start: int, stop: int, device) -> torch.Tensor:
    b = torch.arange(B, device=device).view(B, 1, 1, 1)
    h = torch.arange(H, device=device).view(1, H, 1, 1)
    i = torch.arange(start, stop, device=device).view(1, 1, -1, 1)
    j = torch.arange(S, device=device).view(1, 1, 1, S)
    index = ((b * H + h) * L + i) * S + j
    return uniform24(index, seed) >= _threshold(p)


def _threshold(p: float) -> int:
    return round(p * 2**24)


def _keep_scale(p: float) -> float:
    """1 / (the exact keep probability of :func:`keep_mask`)."""
    return 2**24 / (2**24 - _threshold(p))


def _grouped(t: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, H, ...) -> (B, H // groups, groups, ...): query heads by the key/value head they share."""
    return t.view(t.shape[0], t.shape[1] // groups, groups, *t.shape[2:])


def _block_scores(q_blk, k, mask, is_causal: bool, scale: float, start: int, groups: int):
    """Scores (B, KV, G, rows, S) of a block of query rows, masked."""
    s = torch.matmul(_grouped(q_blk, groups), k.unsqueeze(2).transpose(-2, -1)) * scale
    rows, S = q_blk.shape[2], k.shape[2]
    if is_causal:
        i = torch.arange(start, start + rows, device=q_blk.device).view(-1, 1)
        s = s.masked_fill(torch.arange(S, device=q_blk.device).view(1, -1) > i, -torch.inf)
    if mask is not None:
        m = mask[:, :, start:start + rows] if mask.shape[2] > 1 else mask
        m = m.unsqueeze(2) if m.shape[1] == 1 else _grouped(m, groups)
        s = s.masked_fill(~m, -torch.inf) if m.dtype == torch.bool else s + m
    return s


def _probabilities(s, lse_blk, groups):
    p = torch.exp(s - _grouped(lse_blk, groups).unsqueeze(-1))
    return torch.nan_to_num(p, nan=0.0)  # fully masked rows (lse = -inf): no weight


class _BlockwiseDropout(torch.autograd.Function):
    """Attention with dropout over blocks of query rows; the mask regenerated from the seed in backward."""

    @staticmethod
    def forward(ctx, q, k, v, mask, is_causal: bool, scale, p: float, seed, bits: int):
        B, H, L, D = q.shape
        S, groups = k.shape[2], H // k.shape[1]
        scale = D**-0.5 if scale is None else scale
        out, lse = torch.empty_like(q), q.new_empty(B, H, L, dtype=torch.float32)
        for start in range(0, L, BLOCK):
            stop = min(start + BLOCK, L)
            s = _block_scores(q[:, :, start:stop], k, mask, is_causal, scale, start, groups).float()
            lse_blk = torch.logsumexp(s, dim=-1)  # (B, KV, G, rows)
            lse[:, :, start:stop] = lse_blk.flatten(1, 2)
            probs = torch.nan_to_num(torch.exp(s - lse_blk.unsqueeze(-1)), nan=0.0)
            keep = _grouped(keep_mask(seed, p, B, H, L, S, start, stop, q.device), groups)
            dropped = (probs * keep * _keep_scale(p)).to(v.dtype)
            out[:, :, start:stop] = torch.matmul(dropped, v.unsqueeze(2)).flatten(1, 2)
        saved = _quantized(ctx, (q, k, v, out), bits)
        stored_as(lse, "logsumexp")
        stored_as(seed, "seed")
        ctx.is_causal, ctx.scale, ctx.p = is_causal, scale, p
        ctx.save_for_backward(*saved, lse, mask, seed)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (q, k, v, out), (lse, mask, seed) = _dequantized(ctx, ctx.saved_tensors)
        B, H, L, D = q.shape
        S, groups = k.shape[2], H // k.shape[1]
        scale, p = ctx.scale, ctx.p
        grad_out = grad_out.to(q.dtype)
        delta = (grad_out.float() * out.float()).sum(-1)  # rowsum(dO * O) = rowsum(P * dP) (B, H, L)
        gq = torch.empty_like(q)
        gk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
        gv = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
        for start in range(0, L, BLOCK):
            stop = min(start + BLOCK, L)
            q_blk, go = q[:, :, start:stop], _grouped(grad_out[:, :, start:stop], groups).float()
            s = _block_scores(q_blk, k, mask, ctx.is_causal, scale, start, groups).float()
            probs = _probabilities(s, lse[:, :, start:stop], groups)
            kept = _grouped(keep_mask(seed, p, B, H, L, S, start, stop, q.device), groups) * _keep_scale(p)
            gv += torch.matmul((probs * kept).transpose(-2, -1), go).sum(2)
            dprobs = torch.matmul(go, v.unsqueeze(2).float().transpose(-2, -1)) * kept
            ds = probs * (dprobs - _grouped(delta[:, :, start:stop], groups).unsqueeze(-1)) * scale
            gq[:, :, start:stop] = torch.matmul(ds, k.unsqueeze(2).float()).flatten(1, 2).to(q.dtype)
            gk += torch.matmul(ds.transpose(-2, -1), _grouped(q_blk, groups).float()).sum(2)
        return gq, gk.to(k.dtype), gv.to(v.dtype), None, None, None, None, None, None


_FUNCTIONS = {level: _make(level) for level in NAMES}
