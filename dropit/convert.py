"""Convert a model to DropIT in place, change its dropping rate, and restore it.

``to_dropit(model, gamma=0.9)`` walks the module tree (the
root included) and gives every Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d,
MultiheadAttention and Hugging Face ``Conv1D`` (GPT-2's Linear with a
transposed weight) an instance-level ``forward`` that caches a sparsified input
in training. Nothing else changes: module classes, parameter names and
``state_dict`` keys stay as they were, so checkpoints load with or without
DropIT, and ``model.eval()`` or ``torch.no_grad()`` runs the untouched forward.
Which modules are converted, and with which forward, is the one table
:data:`dropit.kinds.KINDS`; this module walks the model and asks it.

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

import copy
import fnmatch
import numbers
import warnings
from typing import Callable, Iterator, Mapping

import torch
import torch.nn as nn

from . import hf_attention, kinds
from .checkpoint import CheckpointForward, checkpointed_modules
from .kinds import Kind
from .sparsify import DropSpec
from .strategies import DEFAULT_STRATEGY, STRATEGIES, check_gamma

ModuleFilter = Callable[[nn.Module, str], bool]


class DropITForward:
    """Installed as ``module.forward``: the DropIT forward in training, the original otherwise.

    Holds the layer's :class:`DropSpec`; ``module.forward.spec.gamma`` is the
    live dropping rate. ``kind`` is the name of its entry in :data:`dropit.kinds.KINDS`.
    """

    def __init__(self, module: nn.Module, kind: Kind, spec: DropSpec):
        self.module = module
        self.entry = kind
        self.kind = kind.name
        self.spec = spec
        self._train_forward = kind.forward

    def __call__(self, *args, **kwargs):
        m = self.module
        if m.training and torch.is_grad_enabled():
            return self._train_forward(m, self.spec, *args, **kwargs)
        return type(m).forward(m, *args, **kwargs)

    def __repr__(self) -> str:
        quantized = f"quantize={self.spec.quantize!r}"
        if self.entry.option == "quantize":
            return f"DropITForward({self.kind}, {quantized})"
        quantized = f", {quantized}" if self.spec.quantize and self.entry.quantizes else ""
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
            :mod:`dropit.strategies`. Second positionally, as in the official
            code's ``to_dropit(model, strategy, gamma)``; a number here is
            refused with a hint to write ``gamma=``.
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

    Which modules are converted, and how, is the table :data:`dropit.kinds.KINDS`.
    Modules inside blocks checkpointed with :func:`dropit.checkpoint_blocks`
    are left alone (they keep nothing past their block).

    Raises, before changing anything, ValueError for an unknown strategy, a
    gamma outside [0, 1) or NaN, an unknown quantize level or value_dtype, or a
    model that is already converted; TypeError for a number in ``strategy``'s place.
    """
    spec = _checked_spec(strategy, gamma, value_dtype, quantize)
    rates = {p: check_gamma(g, f"gamma_by_name[{p!r}]") for p, g in (gamma_by_name or {}).items()}
    if any(True for _ in converted_modules(model)) or hf_attention.converted(model):
        raise ValueError("model is already converted to DropIT; call dropit.restore(model) first, or set_gamma()")
    attention_configs = hf_attention.plan(model, quantize)  # transformers models: raises before any change
    enabled = {  # kinds.OPTIONS: which option turns each kind on
        "always": True, "relu_mask": relu_mask, "compact_maxpool": compact_maxpool, "quantize": quantize is not None,
    }
    for module, name, kind in _plan(model, enabled, module_filter_fn):
        layer_spec = copy.copy(spec)  # already checked: only the rate differs
        layer_spec.gamma = _gamma_for(name, spec.gamma, rates)
        if kind.prepare is not None:
            kind.prepare(module, layer_spec)
        module.forward = DropITForward(module, kind, layer_spec)
    hf_attention.apply(attention_configs, quantize)  # transformers' attention interface: see dropit.hf_attention
    return model


def _checked_spec(strategy, gamma, value_dtype, quantize) -> DropSpec:
    """The options every layer shares, each checked here, once (:class:`DropSpec` checks them)."""
    if isinstance(strategy, numbers.Real):
        raise TypeError(
            f"to_dropit's second argument is the strategy (one of {sorted(STRATEGIES)}), got the number "
            f"{strategy!r}: did you mean gamma={strategy!r}? Write to_dropit(model, gamma={strategy!r})."
        )
    return DropSpec(gamma, strategy, value_dtype, quantize)


def _plan(model: nn.Module, enabled: Mapping[str, bool], module_filter_fn: ModuleFilter | None):
    """(module, qualified name, kind) for each module to convert, in module order."""
    skip = {id(m) for _, block in checkpointed_modules(model) for m in block.modules()}  # recomputed anyway
    plan: list[tuple[nn.Module, str, Kind]] = []
    for name, module in model.named_modules():
        if id(module) in skip:
            continue
        kind = kinds.entry_of(module)
        if kind is None or not enabled[kind.option]:
            continue
        if kind.filtered and module_filter_fn is not None and not module_filter_fn(module, name):
            continue
        if kind.supports is not None and not kind.supports(module):
            if kind.unsupported is not None:
                warnings.warn(f"{name or 'root'}: {kind.unsupported} is left dense")
            continue
        if kind.computes is not None:
            skip.update(id(child) for child in kind.computes(module))
        plan.append((module, name, kind))
    return plan


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
    hf_attention.restore(model)
    return model
