"""Batches straight from an in-memory uint8 image tensor: seeded order, batched augmentation, normalised floats.

    loader = TensorLoader(images, targets, batch_size=128, mean=CIFAR100_MEAN, std=CIFAR100_STD,
                          seed=0, train=True, device="cuda")
    loader.set_epoch(epoch)
    for x, y in loader:        # x (B, 3, 32, 32) float32 on the device, y (B,) int64
        ...

A stand-in for a ``DataLoader`` over :class:`~dropit.lab.data.datasets.CIFAR100`
without per-image Python: the images (N, 3, H, W) uint8 sit on ``device``
(150 MB for CIFAR-100's training set), each batch is gathered, cropped and
flipped there (:mod:`dropit.lab.data.augment`) and normalised.

Order and augmentation are a function of ``(seed, epoch)`` only (a CPU
``torch.Generator`` seeded from both), so a run resumed at an epoch boundary
sees the same batches as an uninterrupted one, on any device. ``rank`` and
``world`` split each epoch's order like ``DistributedSampler`` (every
``world``-th index), for DDP.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

from dropit.lab.data.augment import crop_flip, draw_crop_flip, normalize


class TensorLoader:
    """Iterable of ``(images float32, targets int64)`` batches from uint8 tensors held in memory."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor | Sequence[int], *, batch_size: int,
                 mean: Sequence[float], std: Sequence[float], seed: int = 0, train: bool = True,
                 drop_last: bool | None = None, device: str | torch.device = "cpu", pad: int = 4,
                 rank: int = 0, world: int = 1):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"TensorLoader needs images (N, C, H, W) uint8, got {images.dtype} {tuple(images.shape)}")
        targets = torch.as_tensor(targets, dtype=torch.int64)
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        if batch_size <= 0 or not 0 <= rank < world:
            raise ValueError(f"batch_size must be positive and 0 <= rank < world; got {batch_size}, {rank}, {world}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.targets = targets.to(self.device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device)
        self.batch_size, self.seed, self.train, self.pad = batch_size, seed, train, pad
        self.drop_last = train if drop_last is None else drop_last
        self.rank, self.world = rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order and crops the next iteration draws (like ``DistributedSampler.set_epoch``)."""
        self.epoch = epoch

    def _shard(self) -> range:
        """Positions of this rank in an epoch's order: every ``world``-th (equal shards when training)."""
        n = len(self.images)
        return range(self.rank, self.world * (n // self.world) if self.train else n, self.world)

    def __len__(self) -> int:
        m = len(self._shard())
        return m // self.batch_size if self.drop_last else -(-m // self.batch_size)

    def _order(self) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """This rank's image indices for the epoch and their augmentation (None when not training)."""
        n = len(self.images)
        shard = self._shard()
        keep = slice(shard.start, shard.stop, shard.step)
        if not self.train:
            return torch.arange(n)[keep], None
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=g)
        aug = draw_crop_flip(n, generator=g, pad=self.pad)  # one draw per slot of the whole epoch: rank-independent
        return order[keep], tuple(a[keep] for a in aug)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, aug = self._order()
        order = order.to(self.device)
        if aug is not None:
            aug = tuple(a.to(self.device) for a in aug)
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[sl]
            x = self.images[idx]  # (B, C, H, W) uint8
            if aug is not None:
                x = crop_flip(x, aug[0][sl], aug[1][sl], aug[2][sl], pad=self.pad)
            yield normalize(x, self.mean, self.std), self.targets[idx]


def uint8_images_of(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 3, H, W) uint8, targets (N,) int64) of a CIFAR100 dataset or a Subset of one, without transforms."""
    from torch.utils.data import Subset

    if isinstance(ds, Subset):
        images, targets = uint8_images_of(ds.dataset)
        idx = torch.as_tensor(ds.indices, dtype=torch.int64)
        return images[idx], targets[idx]
    images = getattr(ds, "images", None)
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise ValueError(f"{type(ds).__name__} holds no uint8 image tensor; the in-memory data path needs CIFAR-100 at 32x32")
    return images, torch.as_tensor(ds.targets, dtype=torch.int64)
