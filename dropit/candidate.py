"""One configuration to compare: how to convert a model and how to compile it, and its name.

    c = Candidate(0.9, "int8")                                    # DropIT γ = 0.9 + int8 lossy companions
    c = Candidate(0.9, compiled=True, fullgraph=True)             # the README's compile line
    c = Candidate(compiled=True, budget=0.2)                      # the compiler's activation memory budget alone
    c = Candidate(0.9, blocks=("layer1.0",), blocks_label="1 block")  # checkpointed blocks, DropIT on the rest
    step_model = c.build(model)                                   # in place: convert, then compile if it compiles

The planner's candidates, the frontier's configurations and the benchmarks'
rows are all Candidates. A row that needs more than the planner's grid says it
with keyword fields: a ``label`` (the name to print), a ``baseline`` (the
name of the row its ratios are taken against), further ``options`` of
:func:`dropit.to_dropit` (``(("relu_mask", False),)``), a ``module_filter``
(the model -> the ``module_filter_fn`` to convert with, for rules that look at
the model: the lab's first layer and classifier), ``blocks_of`` (the model ->
the block names to checkpoint, a rule rather than names), or ``convert_with``
(a peer's own conversion, ``f(model, gamma)``, instead of ``to_dropit``).

Compiled candidates go through :func:`dropit.compile_budgeted`: a backend of
the candidate's own (dynamo never runs one model's graph, and budget, for
another) and, on a CPU with 2-D convolutions, the model in channels_last, the
layout inductor runs convolutions in (``channels_last=None``); that is the same
compiled program as the README's
``torch.compile(dropit.to_dropit(model.to(memory_format=torch.channels_last), gamma=0.9), fullgraph=True)``.
"""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any, Callable, Sequence

import torch.nn as nn

from .budget import compile_budgeted
from .checkpoint import checkpoint_blocks
from .convert import to_dropit
from .strategies import DEFAULT_STRATEGY


@dataclass(frozen=True)
class Candidate:
    """DropIT's rate, strategy and quantize level, checkpointed blocks, compile and its budget; see the module."""

    gamma: float | None = None  # None: no DropIT
    quantize: str | None = None
    blocks: tuple[str, ...] = ()  # checkpointed blocks
    blocks_label: str = ""  # "every other block (4)", ...
    compiled: bool = False
    budget: float | None = None  # the compiler's activation memory budget (compiled only)
    strategy: str = DEFAULT_STRATEGY
    _: KW_ONLY
    label: str | None = None  # the name, where the derived one is not wanted
    baseline: str | None = None  # the name of the candidate its ratios are taken against, in a table that has one
    options: tuple[tuple[str, Any], ...] = ()  # further keyword options of to_dropit
    module_filter: Callable[[nn.Module], Callable[[nn.Module, str], bool]] | None = None
    blocks_of: Callable[[nn.Module], Sequence[str]] | None = None  # a rule choosing the blocks on the model
    convert_with: Callable[[nn.Module, float], object] | None = None  # a peer's conversion instead of to_dropit
    fullgraph: bool = False
    channels_last: bool | None = None  # compile_budgeted's: None puts CPU conv models in channels_last

    @property
    def name(self) -> str:
        if self.label is not None:
            return self.label
        drop = "plain" if self.gamma is None else f"DropIT γ={self.gamma:g}"
        if self.gamma is not None and self.strategy != DEFAULT_STRATEGY:
            drop += f" ({self.strategy})"
        parts = [drop] + ([self.quantize] if self.quantize else [])
        parts += [f"checkpoint {self.blocks_label}"] if self.blocks or self.blocks_of else []
        if self.compiled:
            parts.append(f"compiled, budget {self.budget:g}" if self.budget is not None else "compiled")
        return " + ".join(parts)

    @property
    def exact(self) -> bool:
        """Whether its gradients are the plain model's (no DropIT: checkpointing and the budget are exact)."""
        return self.gamma is None

    def convert(self, model: nn.Module) -> nn.Module:
        """Checkpoint the blocks, then convert with DropIT (or the peer's conversion); in place, returns ``model``."""
        blocks = tuple(self.blocks_of(model)) if self.blocks_of is not None else self.blocks
        if blocks:
            checkpoint_blocks(model, list(blocks))
        if self.gamma is None:
            return model
        if self.convert_with is not None:
            self.convert_with(model, self.gamma)
            return model
        options = dict(self.options)
        if self.module_filter is not None:
            options["module_filter_fn"] = self.module_filter(model)
        to_dropit(model, strategy=self.strategy, gamma=self.gamma, quantize=self.quantize, **options)
        return model

    def compile(self, model: nn.Module) -> nn.Module:
        """The module a step calls: ``model`` itself, or compiled (a backend of its own, at the budget)."""
        if not self.compiled:
            return model
        return compile_budgeted(model, budget=self.budget, channels_last=self.channels_last, fullgraph=self.fullgraph)

    def build(self, model: nn.Module) -> nn.Module:
        """This configuration applied to ``model`` in place; the module to train (compiled if it compiles)."""
        return self.compile(self.convert(model))
