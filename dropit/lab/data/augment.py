"""Pad-reflect random crop and horizontal flip of whole uint8 batches, as tensor ops.

    tops, lefts, flips = draw_crop_flip(n, generator=g)          # (n,), (n,), (n,) bool, on the CPU
    out = crop_flip(images, tops, lefts, flips)                  # (B, 3, H, W) uint8 -> same

The per-image reference (:class:`dropit.lab.data.datasets.CifarTrainTransform`)
reflect-pads an image by ``pad`` pixels, cuts an ``H x W`` window at offset
``(top, left)`` in ``0..2*pad`` and flips it with probability 1/2. Here the same
window is read straight from the unpadded batch with one gather: output row
``r`` is source row ``reflect(top - pad + r)``, output column ``c`` source column
``reflect(left - pad + c)``, or of ``W - 1 - c`` when flipped. No padded copy,
no Python loop per image, and the same code runs on a GPU with the images on it.

Random numbers come from a ``torch.Generator`` on the CPU (a few bytes per image),
so a seed gives the same crops on every device.
"""
from __future__ import annotations

import torch


def draw_crop_flip(n: int, *, generator: torch.Generator, pad: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Offsets ``tops``, ``lefts`` uniform in ``0..2*pad`` and ``flips`` (probability 1/2) for ``n`` images."""
    tops = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    lefts = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return tops, lefts, flips


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Index ``i`` in ``-n+1 .. 2n-2`` mapped into ``0..n-1`` the way reflect padding does (edge not repeated)."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def crop_flip(images: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, flips: torch.Tensor, *,
              pad: int = 4) -> torch.Tensor:
    """Each image reflect-padded by ``pad``, cut at ``(tops[b], lefts[b])`` and flipped where ``flips[b]``.

    ``images`` (B, C, H, W) of any dtype; the offsets and flips may live on any
    device (moved to the images'). Returns a (B, C, H, W) tensor (channels-last
    strides: normalising or ``.contiguous()`` fixes the layout as needed).
    """
    if images.dim() != 4:
        raise ValueError(f"crop_flip expects a batch (B, C, H, W), got shape {tuple(images.shape)}")
    b, _, h, w = images.shape
    if not 0 <= pad < min(h, w):
        raise ValueError(f"pad must be in 0..{min(h, w) - 1} for {h}x{w} images, got {pad}")
    dev = images.device
    tops, lefts, flips = tops.to(dev), lefts.to(dev), flips.to(dev)
    rows = _reflect(tops[:, None] - pad + torch.arange(h, device=dev), h)  # (B, H)
    col = torch.arange(w, device=dev)
    col = torch.where(flips[:, None], w - 1 - col, col)  # (B, W): where each output column reads from, before the crop
    cols = _reflect(lefts[:, None] - pad + col, w)  # (B, W)
    hwc = images.permute(0, 2, 3, 1)  # (B, H, W, C) view
    out = hwc[torch.arange(b, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 ``(x / 255 - mean) / std``, contiguous; ``mean``/``std`` shaped (C,)."""
    x = images.float().div_(255)
    return ((x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)).contiguous()
