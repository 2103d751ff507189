"""Count the bytes autograd keeps for backward: one pack hook, each storage once.

Every tensor autograd saves for backward passes through a
``torch.autograd.graph.saved_tensors_hooks`` pack hook, DropIT's compact
records included (they are saved with ``ctx.save_for_backward``).
:class:`SavedBytes` adds up the bytes of each underlying storage once (the
whole storage, since that is what a saved view keeps alive), leaving out the
model's parameters and buffers. It is the one counting rule of the memory meter
(:class:`dropit.CacheMeter`, which charges each new storage to a layer) and of
the lab's per-step counter (``dropit.lab.train.step_memory``). It adds no
module hooks, so it runs around a ``torch.compile``'d forward too (it then sees
what the compiled graph saves).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


def storage_key(t: torch.Tensor) -> int:
    """The identity of t's storage, shared by its views; distinct even on the meta device (where data_ptr is 0)."""
    return t.untyped_storage()._cdata


class SavedBytes:
    """Context manager: the bytes saved for backward inside it, each storage once, parameters and buffers excluded.

    ``on_new(tensor, key, nbytes)``, if given, is called for each storage the
    first time it is saved. After the block: ``bytes`` (0 if nothing was saved)
    and ``tensors`` (every save, shared storages included).
    """

    def __init__(self, model: nn.Module, on_new: Callable[[torch.Tensor, int, int], None] | None = None):
        self.model = model
        self.on_new = on_new
        self.bytes = 0
        self.tensors = 0

    def __enter__(self) -> "SavedBytes":
        self._excluded = {storage_key(t) for t in (*self.model.parameters(), *self.model.buffers())}
        self._seen: set[int] = set()
        self.bytes = 0
        self.tensors = 0
        # The forward's own tensor objects, alive until the block ends. Autograd holds the
        # detached aliases returned below (same storage, so the same bytes). Returning a saved
        # *output* itself would make a cycle (tensor -> its grad_fn -> the packed tensor) that
        # Python's collector cannot see, and a forward without backward would leak its graph.
        # Holding the originals keeps DropIT's record sharing (a weak reference to a record that
        # layers reuse while it is alive) working as without hooks, and keeps every storage key
        # unique while counting.
        self._originals: list[torch.Tensor] = []
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        self._originals = []

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.tensors += 1
        self._originals.append(t)
        key = storage_key(t)
        if key not in self._excluded and key not in self._seen:
            self._seen.add(key)
            nbytes = t.untyped_storage().nbytes()
            self.bytes += nbytes
            if self.on_new is not None:
                self.on_new(t, key, nbytes)
        return t.detach()


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t
