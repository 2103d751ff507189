"""Peers: other ways of keeping less for backward, written here to be measured against the kit's.

    global_topk(model, 0.9)     # the published DropIT's selection, in place: a conversion, not a kit strategy

A peer is a conversion ``f(model, gamma)`` that a :class:`dropit.candidate.Candidate`
runs instead of :func:`dropit.to_dropit` (its ``convert_with``); it never enters
:data:`dropit.STRATEGIES`, the library's own table.

:func:`global_topk` is the published code's way: every convolution and linear
layer keeps, of its input, the ``num_kept(n, gamma)`` elements of largest
magnitude over the whole tensor (``torch.topk``), as their values and int64
positions, and backward scatters them into a dense zero tensor. The layer's
output and input gradient are exact, the weight gradient is taken from the
scattered input. Nothing else changes (ReLU and MaxPool keep what they keep).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from dropit.strategies import num_kept

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _select(t: torch.Tensor, gamma: float) -> tuple:
    flat = t.reshape(-1)  # (n,)
    idx = flat.abs().topk(num_kept(flat.numel(), gamma), sorted=False).indices  # (k,) int64
    return flat[idx], idx, t.shape


def _expand(packed: tuple) -> torch.Tensor:
    values, idx, shape = packed
    dense = torch.zeros(shape.numel(), dtype=values.dtype, device=values.device)  # (n,)
    return dense.index_put_((idx,), values).view(shape)


def _published_forward(module: nn.Module, gamma: float):
    inner = module.forward

    def forward(x: torch.Tensor, *args, **kwargs):
        if not (module.training and torch.is_grad_enabled()):
            return inner(x, *args, **kwargs)

        def pack(t: torch.Tensor):  # the input (or a view of all of it) is selected; the weight is kept
            same = t.data_ptr() == x.data_ptr() and t.numel() == x.numel() and t.dtype == x.dtype
            return ("topk", _select(t, gamma)) if same else ("kept", t)

        def unpack(packed: tuple) -> torch.Tensor:
            kind, payload = packed
            return _expand(payload) if kind == "topk" else payload

        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            return inner(x, *args, **kwargs)

    return forward


def global_topk(model: nn.Module, gamma: float) -> nn.Module:
    """The published selection on every convolution and linear layer of ``model``, in place; returns it."""
    for module in model.modules():
        if isinstance(module, LAYERS):
            module.forward = _published_forward(module, gamma)
    return model
