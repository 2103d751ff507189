"""What the loop measures on its model between epochs: validation accuracy, and the bytes a forward keeps.

- :func:`evaluate`       loss and top-1/top-5 on this rank's validation shard, summed over ranks
- :func:`cache_figures`  ``dropit.measure_cache`` of one training-mode forward, as plain numbers
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

import dropit
from dropit.lab.train.metrics import Meter, topk_correct


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, autocast,
             memory_format: torch.memory_format = torch.contiguous_format) -> dict[str, float]:
    """Loss and top-1/top-5 (percent) on this rank's shard, summed over all ranks."""
    was = model.training
    model.eval()
    meter = Meter()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    for images, targets in loader:
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        with autocast():
            logits = model(images)
        logits = logits.float()
        c1, c5 = topk_correct(logits, targets)
        meter.update(len(targets), loss=loss_fn(logits, targets).item(), top1=c1, top5=c5)
    meter.all_reduce(device)
    model.train(was)
    return {"val_loss": meter.mean("loss"), "val_top1": meter.percent("top1"), "val_top5": meter.percent("top5"),
            "val_images": meter.n}


def cache_figures(model: nn.Module, sample: torch.Tensor) -> tuple[int, int | None]:
    """(bytes kept for backward by one training forward of ``sample``, that forward's CUDA peak or None).

    ``dropit.measure_cache`` leaves the model as it found it (modes, buffers,
    RNG states), so measuring does not change the run. The CUDA peak (weights
    and transients included) is what the paper's "Cache (MB)" reports.
    """
    report = dropit.measure_cache(model, sample)
    peak = report.peak_cuda_bytes
    return int(report.total_bytes), (int(peak) if peak is not None else None)
