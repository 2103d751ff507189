"""Convert a model to DropIT in place, change its dropping rate, and restore it.

``to_dropit(model, gamma=0.9)`` walks the module tree (the
root included) and gives every Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d,
MultiheadAttention and Hugging Face ``Conv1D`` (GPT-2's Linear with a
transposed weight) an instance-level ``forward`` that caches a sparsified input
in training. Nothing else changes: module classes, parameter names and
``state_dict`` keys stay as they were, so checkpoints load with or without
DropIT, and ``model.eval()`` or ``torch.no_grad()`` runs the untouched forward.

With ``relu_mask=True`` (the default) every ``nn.ReLU`` also keeps a 1-bit mask
instead of its dense output, so that the dense input of the convolution after
it is really freed (see :mod:`dropit.relu`); with ``compact_maxpool=True`` every
``nn.MaxPool2d`` keeps a byte per output instead of its input and indices
(see :mod:`dropit.pool`). Both are exact.

With ``quantize="int8"`` (or ``"int4"``) the ops whose saved inputs DropIT
leaves dense also keep them compressed: BatchNorm1d/2d/3d, LayerNorm, RMSNorm,
GELU, SiLU (Hugging Face's classes too), and the fused attention inside
MultiheadAttention. These companions are **approximate** (forward exact,
gradients from 8- or 4-bit inputs; see :mod:`dropit.quant`); the default
``quantize=None`` leaves them untouched.

Example::

    model = to_dropit(torchvision.models.resnet18(), gamma=0.8,
                      module_filter_fn=lambda m, name: name not in ("conv1", "fc"))
    # to_dropit(model, gamma=0.9, quantize="int8"): BatchNorm/LayerNorm/GELU/attention inputs in 8 bits (lossy)
    set_gamma(model, 0.5)     # at run time, no re-conversion
    restore(model)            # back to the plain model
"""
from __future__ import annotations

import fnmatch
import warnings
from typing import Callable, Iterator, Mapping

import torch
import torch.nn as nn

from . import attention, pool
from .activations import function_of
from .checkpoint import CheckpointForward, checkpointed_modules
from .layers import QUANT_KINDS, get_forward, kind_of
from .quant import check_quantize, fewbit_tables
from .sparsify import DropSpec
from .strategies import DEFAULT_STRATEGY, check_gamma, get_strategy

ModuleFilter = Callable[[nn.Module, str], bool]
_LAYER_KINDS = ("linear", "hf_conv1d", "conv", "conv_transpose", "mha", *QUANT_KINDS)  # what module_filter_fn chooses among


class DropITForward:
    """Installed as ``module.forward``: the DropIT forward in training, the original otherwise.

    Holds the layer's :class:`DropSpec`; ``module.forward.spec.gamma`` is the
    live dropping rate.
    """

    def __init__(self, module: nn.Module, kind: str, spec: DropSpec):
        self.module = module
        self.kind = kind
        self.spec = spec
        self._train_forward = get_forward(kind)

    def __call__(self, *args, **kwargs):
        m = self.module
        if m.training and torch.is_grad_enabled():
            return self._train_forward(m, self.spec, *args, **kwargs)
        return type(m).forward(m, *args, **kwargs)

    def __repr__(self) -> str:
        if self.kind in QUANT_KINDS:
            return f"DropITForward({self.kind}, quantize={self.spec.quantize!r})"
        quantized = f", quantize={self.spec.quantize!r}" if self.spec.quantize and self.kind == "mha" else ""
        return f"DropITForward({self.kind}, gamma={self.spec.gamma}, strategy={self.spec.strategy!r}{quantized})"


def _gamma_for(name: str, gamma: float, gamma_by_name: Mapping[str, float]) -> float:
    for pattern, g in gamma_by_name.items():
        if fnmatch.fnmatchcase(name, pattern):
            return g
    return gamma


def to_dropit(
    model: nn.Module,
    strategy: str = DEFAULT_STRATEGY,
    gamma: float = 0.9,
    *,
    module_filter_fn: ModuleFilter | None = None,
    gamma_by_name: Mapping[str, float] | None = None,
    relu_mask: bool = True,
    compact_maxpool: bool = True,
    value_dtype=None,
    quantize: str | None = None,
) -> nn.Module:
    """Convert ``model`` in place to cache sparsified inputs; returns the model.

    Args:
        strategy: ``"sampled"`` (the default: a linear-time approximation of
            min-k), ``"mink"`` (exact, the paper's) or ``"random"``; see
            :mod:`dropit.strategies`.
        gamma: dropping rate in [0, 1): the fraction of each cached input dropped.
        module_filter_fn: ``(module, qualified_name) -> bool``; only layers for
            which it returns True are converted (the root's name is ``""``).
        gamma_by_name: ``{fnmatch pattern: gamma}`` per-layer rates matched on
            qualified names, first match wins, e.g. ``{"layer4.*": 0.5}``.
        relu_mask: also convert ``nn.ReLU`` to keep a 1-bit mask (exact) instead
            of its output; a ReLU's rate comes from its name like a layer's,
            and at rate 0 it runs as the plain ReLU.
        compact_maxpool: also convert ``nn.MaxPool2d`` to keep a one-byte
            window offset per output instead of its input and int64 indices
            (exact; see :mod:`dropit.pool`).
        value_dtype: keep the kept values in ``torch.bfloat16`` or
            ``torch.float16`` instead of the input's dtype (off by default).
        quantize: ``None`` (the default: nothing else changes), ``"int8"`` or
            ``"int4"``: also convert BatchNorm1d/2d/3d, LayerNorm, RMSNorm,
            GELU, SiLU (torch's, and Hugging Face's own classes: see
            :mod:`dropit.hf_modules`) and MultiheadAttention's fused attention
            to keep their saved inputs quantized (per-group int8; int4, and a 4-bit
            derivative code for GELU/SiLU). **Approximate**: outputs are
            exact, gradients come from the quantized inputs. ``module_filter_fn``
            chooses among these modules too.

    Modules inside blocks checkpointed with :func:`dropit.checkpoint_blocks`
    are left alone (they keep nothing past their block).

    Raises ValueError, before changing anything, for an unknown strategy, a
    gamma outside [0, 1) or NaN, an unknown quantize level, or a model that
    is already converted.
    """
    quantize = check_quantize(quantize)
    get_strategy(strategy)
    gamma = check_gamma(gamma)
    gamma_by_name = {p: check_gamma(g, f"gamma_by_name[{p!r}]") for p, g in (gamma_by_name or {}).items()}
    DropSpec(gamma, strategy, value_dtype)  # validates value_dtype
    if any(True for _ in converted_modules(model)):
        raise ValueError("model is already converted to DropIT; call dropit.restore(model) first, or set_gamma()")

    plan: list[tuple[nn.Module, str, str]] = []
    skip_children = {id(m) for _, block in checkpointed_modules(model) for m in block.modules()}  # recomputed anyway
    for name, module in model.named_modules():
        if id(module) in skip_children:
            continue
        kind = kind_of(module)
        if kind is None or (kind == "relu" and not relu_mask) or (kind == "maxpool" and not compact_maxpool):
            continue
        if kind in QUANT_KINDS and quantize is None:
            continue
        if kind == "maxpool" and not pool.supports(module):
            continue
        if module_filter_fn is not None and kind in _LAYER_KINDS and not module_filter_fn(module, name):
            continue
        if kind == "mha":
            if not attention.supports(module):
                warnings.warn(f"{name or 'root'}: MultiheadAttention with bias_k/add_zero_attn is left dense")
                continue
            skip_children.add(id(module.out_proj))  # computed by the MHA forward itself
        plan.append((module, name, kind))

    for module, name, kind in plan:
        if kind in ("gelu", "silu") and quantize == "int4":  # fit the derivative tables now, not while compiling
            fewbit_tables(function_of(module))
        spec = DropSpec(_gamma_for(name, gamma, gamma_by_name), strategy, value_dtype, quantize)
        module.forward = DropITForward(module, kind, spec)
    return model


def converted_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module, DropITForward]]:
    """(qualified name, module, its DropITForward) for every converted module."""
    for name, module in model.named_modules():
        fwd = module.__dict__.get("forward")
        if isinstance(fwd, DropITForward):
            yield name, module, fwd


def set_gamma(model: nn.Module, gamma: float | Mapping[str, float]) -> nn.Module:
    """Change the dropping rate of converted layers without converting again.

    ``gamma`` is one rate for all, or ``{fnmatch pattern: rate}`` for the
    layers whose qualified names match.
    """
    if isinstance(gamma, Mapping):
        rates = {p: check_gamma(g, f"gamma[{p!r}]") for p, g in gamma.items()}
        for name, _, fwd in converted_modules(model):
            g = _gamma_for(name, None, rates)
            if g is not None:
                fwd.spec.gamma = g
        return model
    g = check_gamma(gamma)
    for _, _, fwd in converted_modules(model):
        fwd.spec.gamma = g
    return model


def restore(model: nn.Module) -> nn.Module:
    """Undo :func:`to_dropit` (and :func:`dropit.checkpoint_blocks`) in place; returns the plain model."""
    for module in model.modules():
        if isinstance(module.__dict__.get("forward"), (DropITForward, CheckpointForward)):
            del module.__dict__["forward"]
    return model
