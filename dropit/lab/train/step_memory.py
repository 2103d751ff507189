"""Bytes one training forward keeps for backward, counted from that forward's own saves.

    counter = StepMemory(model)
    with counter:
        logits = model(images)          # the step's real forward: nothing extra runs
    counter.bytes                       # kept for backward by it (None if nothing was saved)
    loss_fn(logits, targets).backward()

Every tensor autograd saves for backward passes through a
``torch.autograd.graph.saved_tensors_hooks`` pack hook, DropIT's compact
records included (they are saved with ``ctx.save_for_backward``). The counter
adds up the bytes of each underlying storage once (the whole storage, since
that is what a saved view keeps alive), leaving out the model's parameters and
buffers. It is the total of :class:`dropit.CacheMeter` without the per-module
bookkeeping, so it is cheap enough to run on every step and adds no module
hooks (which would break a ``torch.compile`` graph).

Under ``torch.compile`` the compiled function saves its tensors through an
autograd.Function as well, so the counter sees what the compiled graph keeps
(inductor may keep other tensors than eager autograd: it can recompute cheap
intermediates, or save them in place of inputs).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class StepMemory:
    """Context manager: the bytes saved for backward inside it, each storage once, parameters excluded."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.bytes: int | None = None  # the last forward's total, set on exit
        self.tensors = 0  # saves seen in the last forward (shared storages counted in bytes once)

    def __enter__(self) -> "StepMemory":
        self._excluded = {_key(t) for t in (*self.model.parameters(), *self.model.buffers())}
        self._seen: set[tuple] = set()
        self._total = 0
        self.tensors = 0
        # The forward's own tensor objects, alive until the forward ends. Autograd holds the
        # detached aliases returned below (same storage, so the same bytes). Returning a saved
        # *output* itself would make a cycle (tensor -> its grad_fn -> the packed tensor) that
        # Python's collector cannot see, and a forward without backward would leak its graph.
        # Holding the originals while the forward runs keeps DropIT's record sharing (a weak
        # reference to a record that layers reuse while it is alive) working as without hooks.
        self._originals: list[torch.Tensor] = []
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        self._originals = []
        self.bytes = self._total if self.tensors else None

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.tensors += 1
        key = _key(t)
        if key not in self._excluded and key not in self._seen:
            self._seen.add(key)
            self._total += t.untyped_storage().nbytes()
        self._originals.append(t)
        return t.detach()


def _key(t: torch.Tensor) -> tuple:
    storage = t.untyped_storage()
    return (storage.device, storage.data_ptr(), storage.nbytes())


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t
