"""DropIT's record operations as ``torch.library`` custom ops, so ``torch.compile`` sees them whole.

    values, positions, count = torch.ops.dropit.sparsify(x, gamma, strategy, kind, capacity)   # x in memory order
    flat = torch.ops.dropit.expand(values, positions, kind, numel)
    bits = torch.ops.dropit.pack_nonzero(flat)
    grad = torch.ops.dropit.mask_grad(grad, bits)

Each op is opaque to the compiler: its fake (meta) implementation gives the
static output shapes, which depend on the input's size and the capacity only,
and its real implementation runs the same code as eager mode (the strategy,
then :mod:`dropit.kernels`), so compiled and eager DropIT keep the same
elements. Two identical calls on one tensor in a compiled graph (a ResNet
block's input feeds both conv1 and the shortcut) are merged by the compiler's
common-subexpression pass: one record, as the eager cache gives.

Eager mode calls the implementations directly (:func:`make`, :func:`unmake`,
...), without the custom-op dispatch; :func:`call` picks.
"""
from __future__ import annotations

import torch

from . import kernels
from .kernels import magnitude_keys
from .strategies import get_strategy


def make(flat: torch.Tensor, gamma: float, strategy: str, kind: str, capacity: int):
    """The tensors of a record of ``flat``, a contiguous tensor taken as (n,) in memory order: (values,
    positions, count); see :mod:`dropit.record`."""
    flat = flat.view(-1)
    if flat.is_meta:
        return _make_fake(flat, gamma, strategy, kind, capacity)
    chosen = get_strategy(strategy)
    sel = chosen.select(flat, gamma)
    values, positions, count = _store(flat, sel, kind, capacity)
    if chosen.finish is not None:
        values = chosen.finish(values, flat, sel)
    return values, positions, count


def _store(flat: torch.Tensor, sel, kind: str, capacity: int):
    if kind == "bits":
        return kernels.compress(flat, capacity, thr=sel.thr, mask=sel.mask)
    keep = sel.mask.bool() if sel.mask is not None else magnitude_keys(flat) > sel.thr
    count = keep.sum(dtype=torch.int64)
    if kind == "dense":  # low rates: the masked tensor is the smallest record
        return torch.where(keep, flat, 0), flat.new_empty(0, dtype=torch.uint8), count
    n = flat.numel()  # "index": int32 positions, padded with n
    at = torch.nonzero_static(keep, size=capacity, fill_value=n).view(-1)
    values = torch.where(at < n, flat.index_select(0, at.clamp_max(max(n - 1, 0))), 0) if n else flat.new_zeros(capacity)
    return values, at.to(torch.int32), count


def _make_fake(flat, gamma, strategy, kind, capacity):
    n = flat.numel()
    count = flat.new_empty((), dtype=torch.int64)
    if kind == "dense":
        return flat.new_empty(n), flat.new_empty(0, dtype=torch.uint8), count
    positions = flat.new_empty(capacity, dtype=torch.int32) if kind == "index" else flat.new_empty((n + 7) // 8, dtype=torch.uint8)
    return flat.new_empty(capacity), positions, count


def unmake(values: torch.Tensor, positions: torch.Tensor, kind: str, numel: int) -> torch.Tensor:
    """The dense (numel,) tensor of a "bits" or "index" record's tensors."""
    if values.is_meta:
        return values.new_empty(numel)
    if kind == "bits":
        return kernels.expand(values, positions, numel)
    out = values.new_zeros(numel + 1)
    out.index_copy_(0, positions.long(), values)  # padding positions all land on the extra element
    return out[:numel]


@torch.library.custom_op("dropit::sparsify", mutates_args=())
def sparsify_op(
    flat: torch.Tensor, gamma: float, strategy: str, kind: str, capacity: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    values, positions, count = make(flat, gamma, strategy, kind, capacity)
    return values, positions, count


@sparsify_op.register_fake
def _(flat, gamma, strategy, kind, capacity):
    return _make_fake(flat, gamma, strategy, kind, capacity)


@torch.library.custom_op("dropit::expand", mutates_args=())
def expand_op(values: torch.Tensor, positions: torch.Tensor, kind: str, numel: int) -> torch.Tensor:
    return unmake(values, positions, kind, numel)


@expand_op.register_fake
def _(values, positions, kind, numel):
    return values.new_empty(numel)


@torch.library.custom_op("dropit::pack_nonzero", mutates_args=())
def pack_nonzero_op(flat: torch.Tensor) -> torch.Tensor:
    return kernels.pack_nonzero(flat)


@pack_nonzero_op.register_fake
def _(flat):
    return flat.new_empty((flat.numel() + 7) // 8, dtype=torch.uint8)


@torch.library.custom_op("dropit::mask_grad", mutates_args=())
def mask_grad_op(grad: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    return kernels.mask_grad(grad, bits)


@mask_grad_op.register_fake
def _(grad, bits):
    return torch.empty_like(grad)


_EAGER = {sparsify_op: make, expand_op: unmake, pack_nonzero_op: kernels.pack_nonzero, mask_grad_op: kernels.mask_grad}


def call(op, *args):
    """``op(*args)`` under ``torch.compile`` tracing; its implementation directly in eager mode."""
    if torch.compiler.is_compiling():
        return op(*args)
    return _EAGER[op](*args)

