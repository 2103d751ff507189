"""A lossy companion of gated MLPs (LLaMA's SwiGLU, GeGLU): the product ``act(gate) * up`` keeping its operands quantized.

A gated MLP computes ``down_proj(act_fn(gate_proj(x)) * up_proj(x))``. Autograd
keeps, besides the projections' inputs, the activation's input ``gate`` and
both operands of the product, ``act(gate)`` and ``up``: three tensors of the
MLP's inner width, dense. With ``quantize="int8"`` (or ``"int4"``) this keeps
``gate`` and ``up`` once each as per-group codes (:mod:`dropit.quant`);
backward recomputes ``act(gate)`` from the dequantized gate. The projections
stay DropIT linears. The output is the module's own, bit for bit (the same ops
in the same order); the gradients are approximate.

Hugging Face's MLP classes (``LlamaMLP``, ``MistralMLP``, ``Qwen2MLP``,
GeGLU variants, ...) are recognised by structure, without importing
transformers: ``gate_proj``, ``up_proj`` and ``down_proj`` Linears and an
``act_fn`` that :mod:`dropit.hf_modules` (or torch) recognises as SiLU or
GELU; at conversion the module's own forward runs on a small probe and must
equal ``down(act(gate(x)) * up(x))``, so a look-alike is left alone.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import hf_modules, quant
from .activations import _apply, function_of


def _activation(m: nn.Module) -> str | None:
    if isinstance(m, (nn.SiLU, nn.GELU)):
        return function_of(m)
    return hf_modules.activation_function(m)


def is_gated_mlp(m: nn.Module) -> bool:
    """Whether ``m`` computes ``down_proj(act_fn(gate_proj(x)) * up_proj(x))`` with a SiLU or GELU ``act_fn``."""
    projections = [getattr(m, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
    act = getattr(m, "act_fn", None)
    if not all(isinstance(p, nn.Linear) for p in projections) or not isinstance(act, nn.Module):
        return False
    gate, up, down = projections
    if gate.out_features != up.out_features or down.in_features != up.out_features:
        return False
    if _activation(act) is None:
        return False
    if gate.weight.is_meta:  # size estimates: the structure only
        return True
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(2, gate.in_features, generator=generator).to(gate.weight)
    try:
        with torch.no_grad():
            got = type(m).forward(m, probe)
            product = _apply(_activation(act), F.linear(probe, gate.weight, gate.bias)) * F.linear(probe, up.weight, up.bias)
            want = F.linear(product, down.weight, down.bias)
    except Exception:  # not the forward we know: leave it alone
        return False
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return False
    tol = 1e-5 if gate.weight.dtype in (torch.float32, torch.float64) else 2e-2
    return torch.allclose(got, want, rtol=tol, atol=tol * float(want.abs().max().clamp_min(1.0)))


def activation_of(m: nn.Module) -> tuple[nn.Module, ...]:
    """The child this kind computes itself (``Kind.computes``): the activation."""
    return (m.act_fn,)


class _GatedProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up, act: nn.Module, function: str, bits: int):
        out = act(gate) * up  # the module's own ops, in its order
        records = [quant.quantize(t, bits) for t in (gate, up)]
        ctx.layouts = [r.layout for r in records]
        ctx.counts = [len(r.saved) for r in records]
        ctx.function = function
        ctx.save_for_backward(*(t for r in records for t in r.saved))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        saved, dense = list(ctx.saved_tensors), []
        for layout, count in zip(ctx.layouts, ctx.counts):
            dense.append(quant.dequantize(quant.QRecord.from_saved(saved[:count], layout)))
            del saved[:count]
        gate, up = dense
        grad_up = grad_out * _apply(ctx.function, gate)
        grad_act = grad_out * up
        if ctx.function == "silu":
            grad_gate = torch.ops.aten.silu_backward(grad_act, gate)
        else:
            grad_gate = torch.ops.aten.gelu_backward(grad_act, gate, approximate=ctx.function.removeprefix("gelu_"))
        return grad_gate, grad_up, None, None, None


def gated_mlp_forward(m: nn.Module, spec, x: torch.Tensor) -> torch.Tensor:
    """``m(x)`` for a gated MLP, the product keeping gate and up quantized (the projections as converted)."""
    gate, up = m.gate_proj(x), m.up_proj(x)
    if not (torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad)) or not gate.is_floating_point():
        return m.down_proj(m.act_fn(gate) * up)
    product = _GatedProduct.apply(gate, up, m.act_fn, function_of(m.act_fn), quant.bits_of(spec.quantize))
    return m.down_proj(product)
