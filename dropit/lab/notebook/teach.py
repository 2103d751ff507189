"""The small computations the quickstart notebook shows, kept out of its cells.

- :func:`demo_activation` a reproducible activation tensor with spatial structure;
- :func:`drop` what DropIT keeps of it: the sparsified dense tensor, the mask of
  kept elements, the |x| threshold and the compact record;
- :func:`grad_error_vs_gamma` the weight-gradient error of one layer against
  dense autograd as the dropping rate grows (grad_input stays exact);
- :func:`kept_bytes_vs_gamma` the bytes of the compact record against the dense
  tensor and against the published format (values + int32 indices);
- :func:`cache_vs_gamma` the whole model's bytes kept for backward (the meter).

Everything returns plain tensors or lists of dicts, ready for ``dropit.lab.plots``.

    x = demo_activation()
    d = drop(x, gamma=0.9)              # d.after has zeros where DropIT dropped
    rows = grad_error_vs_gamma(torch.nn.Conv2d(16, 32, 3, padding=1), x)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

import dropit
from dropit.record import Record
from dropit.strategies import threshold_magnitude

DEFAULT_GAMMAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def demo_activation(batch: int = 4, channels: int = 16, size: int = 32, seed: int = 0) -> torch.Tensor:
    """A (batch, channels, size, size) fp32 activation with the look of a real one.

    Smoothed noise ("images") through a random 5x5 convolution, scaled to unit
    std: neighbouring elements are correlated and magnitudes spread like a
    convolution's pre-activation output. Deterministic for a given seed.
    """
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size + 8, size + 8, generator=g)  # (B, 3, S+8, S+8)
    images = F.avg_pool2d(images, 5, stride=1)  # (B, 3, S+4, S+4), smooth
    weight = torch.randn(channels, 3, 5, 5, generator=g)
    x = F.conv2d(images, weight)  # (B, C, S, S)
    return (x / x.std()).contiguous()


@dataclass
class Dropped:
    """What DropIT keeps of one tensor (all tensors have the input's shape)."""

    before: torch.Tensor  # the dense input
    after: torch.Tensor  # what backward sees: kept values, zeros elsewhere
    kept: torch.Tensor  # bool, True where the element was kept
    threshold: float | None  # |x| boundary between dropped and kept (None for "random")
    record: Record  # the compact record stored for backward
    gamma: float
    strategy: str

    @property
    def kept_fraction(self) -> float:
        return self.kept.float().mean().item()


def drop(x: torch.Tensor, gamma: float, strategy: str = "mink", seed: int = 0) -> Dropped:
    """Sparsify ``x`` as a converted layer would and expand it back.

    ``seed`` fixes the "random" strategy's choice without touching the global RNG.
    """
    x = x.detach()
    spec = dropit.DropSpec(gamma, strategy)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        record = dropit.sparsify(x, spec)
    after = dropit.expand(record)
    kind = record.layout.kind
    if kind in ("bits", "index"):
        kept = dropit.expand(record._replace(values=torch.ones_like(record.values))).bool()
    else:  # "dense": the masked tensor itself; a dropped zero equals a kept one
        kept = after.ne(0) | x.eq(0)
    return Dropped(x, after, kept, _threshold(x, kept, spec), record, spec.gamma, strategy)


def _threshold(x: torch.Tensor, kept: torch.Tensor, spec: dropit.DropSpec) -> float | None:
    if spec.strategy == "random":
        return None
    if spec.strategy == "sampled":
        t = threshold_magnitude(x.reshape(-1), spec.gamma)
        return 0.0 if t is None else t
    mag = x.abs()
    dropped = mag[~kept]
    return dropped.max().item() if dropped.numel() else 0.0


def _weight_grads(layer: nn.Module, x: torch.Tensor, grad_out: torch.Tensor):
    layer.zero_grad(set_to_none=True)
    xin = x.detach().clone().requires_grad_(True)
    layer(xin).backward(grad_out)
    return layer.weight.grad.detach().clone(), xin.grad.detach().clone()


def grad_error_vs_gamma(
    layer: nn.Module,
    x: torch.Tensor,
    gammas: Iterable[float] = DEFAULT_GAMMAS,
    strategy: str = "mink",
    seed: int = 0,
) -> list[dict]:
    """Gradient error of a DropIT copy of ``layer`` against dense autograd, per gamma.

    One fixed random upstream gradient; the layer itself is not modified.
    Rows: gamma, weight_rel_error (||dW - dW_ref|| / ||dW_ref||), weight_cosine,
    input_rel_error (exact up to float rounding: grad_input needs only the weight).
    """
    layer = copy.deepcopy(layer).train()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        out_shape = layer(x).shape
    grad_out = torch.randn(out_shape, generator=g)
    ref_w, ref_x = _weight_grads(layer, x, grad_out)
    rows = []
    for gamma in gammas:
        model = dropit.to_dropit(copy.deepcopy(layer), strategy, gamma, relu_mask=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gw, gx = _weight_grads(model, x, grad_out)
        rows.append(
            {
                "gamma": float(gamma),
                "strategy": strategy,
                "weight_rel_error": ((gw - ref_w).norm() / ref_w.norm()).item(),
                "weight_cosine": F.cosine_similarity(gw.reshape(1, -1), ref_w.reshape(1, -1)).item(),
                "input_rel_error": ((gx - ref_x).norm() / ref_x.norm()).item(),
            }
        )
    return rows


def kept_bytes_vs_gamma(
    x: torch.Tensor, gammas: Iterable[float] = DEFAULT_GAMMAS, strategy: str = "mink", seed: int = 0
) -> list[dict]:
    """Bytes DropIT keeps for ``x`` at each gamma.

    Rows: gamma, kept_bytes (this kit's record: values + bitmask or int32
    indices, or the dense tensor when that is smaller), format, dense_bytes,
    published_bytes (values + one int32 index per kept element, the ICLR code's
    format), ratio (kept_bytes / dense_bytes).
    """
    dense = x.numel() * x.element_size()
    rows = []
    for gamma in gammas:
        d = drop(x, gamma, strategy, seed)
        k = int(d.kept.sum())
        rows.append(
            {
                "gamma": float(gamma),
                "strategy": strategy,
                "kept_elements": k,
                "kept_bytes": d.record.nbytes(),
                "format": d.record.layout.kind,
                "dense_bytes": dense,
                "published_bytes": k * (x.element_size() + 4),
                "ratio": d.record.nbytes() / dense,
            }
        )
    return rows


def cache_vs_gamma(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    gammas: Iterable[float] = DEFAULT_GAMMAS,
    strategy: str = "mink",
    **to_dropit_kwargs,
) -> list[dict]:
    """The whole model's bytes kept for backward at each gamma, from the meter.

    Works on a copy. The first row (gamma ``None``) is the plain model.
    Rows: gamma, cache_bytes, cache_mib, ratio (to the plain model).
    """
    model = copy.deepcopy(model).train()
    inputs = tuple(inputs)
    plain = dropit.measure_cache(model, *inputs).total_bytes
    rows = [{"gamma": None, "label": "plain", "cache_bytes": plain, "cache_mib": plain / 2**20, "ratio": 1.0}]
    dropit.to_dropit(model, strategy, 0.0, **to_dropit_kwargs)
    for gamma in gammas:
        dropit.set_gamma(model, gamma)
        total = dropit.measure_cache(model, *inputs).total_bytes
        rows.append(
            {
                "gamma": float(gamma),
                "label": f"DropIT {gamma:g}",
                "cache_bytes": total,
                "cache_mib": total / 2**20,
                "ratio": total / plain if plain else float("nan"),
            }
        )
    return rows


def model_cache_vs_gamma(
    model_name: str,
    gammas: Iterable[float] = DEFAULT_GAMMAS,
    *,
    strategy: str = "mink",
    batch_size: int = 2,
    image_size: int | None = None,
    num_classes: int = 100,
    seed: int = 0,
) -> list[dict]:
    """:func:`cache_vs_gamma` for a lab model, first layer and classifier left dense."""
    from dropit.lab.models.catalog import build_model, default_dropit_exclude, default_image_size, dropit_filter

    size = image_size or default_image_size(model_name)
    torch.manual_seed(seed)
    model = build_model(model_name, num_classes, image_size=size)
    x = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(seed))
    keep = dropit_filter(default_dropit_exclude(model))
    return cache_vs_gamma(model, [x], gammas, strategy, module_filter_fn=keep)
