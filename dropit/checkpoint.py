"""Activation checkpointing of chosen blocks, so DropIT and checkpointing combine in one model.

    dropit.checkpoint_blocks(model, ["layer1.0", "layer2.0"])   # recompute these blocks in backward
    dropit.to_dropit(model, quantize="int8")                    # DropIT (+ int8) on everything else
    dropit.restore(model)                                       # undoes both

A checkpointed block keeps only its input for backward and runs its forward a
second time there (``torch.utils.checkpoint``, non-reentrant), so it costs
about one more forward of the block; DropIT keeps compact records at a fixed,
smaller cost. :func:`dropit.to_dropit` leaves the modules inside checkpointed
blocks alone: they keep nothing past the block, so a drop there would only
add work. BatchNorm layers inside a block update their running statistics in
the forward only, not again when backward recomputes it (plain
``torch.utils.checkpoint`` updates them twice per step). Like
:func:`dropit.to_dropit` this sets an instance-level ``forward``: module
classes and ``state_dict`` keys do not change, and ``model.eval()`` or
``torch.no_grad()`` run the plain forward.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


@contextlib.contextmanager
def _running_stats_frozen(block: nn.Module):
    """BatchNorm running statistics (and batch counts) of ``block`` unchanged inside."""
    norms = [m for m in block.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


class CheckpointForward:
    """Installed as ``module.forward``: the module's own forward under ``torch.utils.checkpoint`` in training."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, *args, **kwargs):
        m = self.module
        if m.training and torch.is_grad_enabled() and torch.compiler.is_compiling():
            # dynamo refuses context_fn; the compiled graph's recompute runs no buffer update again anyway
            return checkpoint(type(m).forward, m, *args, use_reentrant=False, **kwargs)
        if m.training and torch.is_grad_enabled():
            return checkpoint(type(m).forward, m, *args, use_reentrant=False,
                              context_fn=lambda: (contextlib.nullcontext(), _running_stats_frozen(m)), **kwargs)
        return type(m).forward(m, *args, **kwargs)

    def __repr__(self) -> str:
        return f"CheckpointForward({type(self.module).__name__})"


def checkpoint_blocks(model: nn.Module, names: Iterable[str]) -> nn.Module:
    """Checkpoint the submodules of ``model`` with these qualified names; returns the model.

    Raises ValueError, before changing anything, for a name that is not a
    submodule, or one that already has its own ``forward`` (converted or
    checkpointed already).
    """
    modules = dict(model.named_modules())
    names = list(names)
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"no submodule named {unknown[:5]} in the model; names look like {list(modules)[1:6]}")
    taken = [n for n in names if "forward" in modules[n].__dict__]
    if taken:
        raise ValueError(f"{taken[:5]} already have their own forward (converted or checkpointed); "
                         "call dropit.restore(model) first")
    for n in names:
        modules[n].forward = CheckpointForward(modules[n])
    return model


def checkpointed_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(qualified name, module) of every checkpointed block."""
    for name, module in model.named_modules():
        if isinstance(module.__dict__.get("forward"), CheckpointForward):
            yield name, module
