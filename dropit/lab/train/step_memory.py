"""Bytes one training forward keeps for backward, counted from that forward's own saves.

    counter = StepMemory(model)
    with counter:
        logits = model(images)          # the step's real forward: nothing extra runs
    counter.bytes                       # kept for backward by it (None if nothing was saved)
    loss_fn(logits, targets).backward()

The counting is the core's (:class:`dropit.saved.SavedBytes`): a pack hook that
adds up each storage saved for backward once, parameters and buffers left out;
the total of :class:`dropit.CacheMeter` without the per-module bookkeeping, so
it is cheap enough to run on every step and adds no module hooks (which would
break a ``torch.compile`` graph).

Under ``torch.compile`` the compiled function saves its tensors through an
autograd.Function as well, so the counter sees what the compiled graph keeps
(inductor may keep other tensors than eager autograd: it can recompute cheap
intermediates, or save them in place of inputs).
"""
from __future__ import annotations

import torch.nn as nn

from dropit.saved import SavedBytes


class StepMemory:
    """Context manager: the bytes saved for backward inside it, each storage once, parameters excluded."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.bytes: int | None = None  # the last forward's total, set on exit
        self.tensors = 0  # saves seen in the last forward (shared storages counted in bytes once)

    def __enter__(self) -> "StepMemory":
        self._counter = SavedBytes(self.model)
        self._counter.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._counter.__exit__(*exc)
        self.tensors = self._counter.tensors
        self.bytes = self._counter.bytes if self.tensors else None
