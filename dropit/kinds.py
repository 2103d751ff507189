"""The module kinds DropIT converts: one entry each, in one table.

An entry says how to recognise the kind (``matches``), the training forward
that replaces the module's own (``forward(module, spec, *args, **kwargs)``),
which :func:`dropit.to_dropit` option enables it (``"always"``,
``"relu_mask"``, ``"compact_maxpool"`` or ``"quantize"``) and whether
``module_filter_fn`` chooses among its modules. :func:`dropit.to_dropit` walks
the model and asks this table; adding a kind is adding an entry to
:data:`KINDS`.

The first entry that matches a module wins, so more specific kinds come first
(``MultiheadAttention`` before ``Linear``, torch's own classes before the Hugging
Face ones recognised by their structure).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch.nn as nn

from . import attention, gated, hf_modules, layers, pool
from .activations import activation_forward, function_of
from .norms import TORCH_RMSNORM, batchnorm_forward, is_batchnorm, layernorm_forward, rmsnorm_forward
from .quant import fewbit_tables
from .sparsify import DropSpec

OPTIONS = ("always", "relu_mask", "compact_maxpool", "quantize")


@dataclass(frozen=True)
class Kind:
    """One kind of module DropIT converts.

    ``supports`` says whether this instance can be converted (else it is
    left dense, with a warning naming ``unsupported`` where that is given).
    ``computes`` lists the child modules this kind's forward computes itself
    (they are then not converted on their own). ``prepare`` runs once per
    module at conversion. ``quantizes``: the forward also keeps something
    quantized when ``quantize=`` is set (true of every ``"quantize"`` kind);
    the converted forward's repr then shows the level.
    """

    name: str
    matches: Callable[[nn.Module], bool]
    forward: Callable
    option: str = "always"
    filtered: bool = True  # whether module_filter_fn chooses among these modules
    supports: Callable[[nn.Module], bool] | None = None
    unsupported: str | None = None  # what an instance left dense is, for the warning
    computes: Callable[[nn.Module], Iterable[nn.Module]] | None = None
    prepare: Callable[[nn.Module, DropSpec], None] | None = None
    quantizes: bool = False

    def __post_init__(self):
        if self.option not in OPTIONS:
            raise ValueError(f"kind {self.name!r}: option must be one of {OPTIONS}, got {self.option!r}")


@dataclass(frozen=True)
class InstanceOf:
    """``matches`` for kinds recognised by class: ``isinstance(module, classes)`` (picklable, unlike a lambda)."""

    classes: tuple[type, ...]

    def __call__(self, module: nn.Module) -> bool:
        return isinstance(module, self.classes)


def _is_gelu(m: nn.Module) -> bool:
    return isinstance(m, nn.GELU) or hf_modules.activation_function(m) not in (None, "silu")


def _is_silu(m: nn.Module) -> bool:
    return isinstance(m, nn.SiLU) or hf_modules.activation_function(m) == "silu"


def _is_rmsnorm(m: nn.Module) -> bool:
    return (TORCH_RMSNORM is not None and isinstance(m, TORCH_RMSNORM)) or hf_modules.is_rmsnorm(m)


def _out_proj(m: nn.MultiheadAttention) -> tuple[nn.Module, ...]:
    return (m.out_proj,)  # passed to F.multi_head_attention_forward as a weight, never called


def _fit_fewbit_tables(m: nn.Module, spec: DropSpec) -> None:
    if spec.quantize == "int4":  # fit the derivative tables now, not while compiling
        fewbit_tables(function_of(m))


KINDS: tuple[Kind, ...] = (
    Kind("mha", InstanceOf((nn.MultiheadAttention,)), attention.mha_forward, supports=attention.supports,
         unsupported="MultiheadAttention with bias_k/add_zero_attn", computes=_out_proj, quantizes=True),
    Kind("linear", InstanceOf((nn.Linear,)), layers.linear_forward),
    Kind("hf_conv1d", layers.is_hf_conv1d, layers.hf_conv1d_forward),
    Kind("conv_transpose", InstanceOf((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)),
         layers.conv_transpose_forward),
    Kind("conv", InstanceOf((nn.Conv1d, nn.Conv2d, nn.Conv3d)), layers.conv_forward),
    Kind("relu", InstanceOf((nn.ReLU,)), layers.relu_forward, option="relu_mask", filtered=False),
    Kind("maxpool", InstanceOf((nn.MaxPool2d,)), layers.maxpool_forward,
         option="compact_maxpool", filtered=False, supports=pool.supports),
    Kind("batchnorm", is_batchnorm, batchnorm_forward, option="quantize"),
    Kind("layernorm", InstanceOf((nn.LayerNorm,)), layernorm_forward, option="quantize"),
    Kind("rmsnorm", _is_rmsnorm, rmsnorm_forward, option="quantize"),
    Kind("gelu", _is_gelu, activation_forward, option="quantize", prepare=_fit_fewbit_tables),
    Kind("silu", _is_silu, activation_forward, option="quantize", prepare=_fit_fewbit_tables),
    Kind("gated_mlp", gated.is_gated_mlp, gated.gated_mlp_forward, option="quantize", computes=gated.activation_of),
)


def entry_of(module: nn.Module) -> Kind | None:
    """The first entry of :data:`KINDS` that recognises ``module``, or None."""
    for kind in KINDS:
        if kind.matches(module):
            return kind
    return None

