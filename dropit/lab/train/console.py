"""What a run prints on rank 0: a banner, a tqdm bar on a terminal (plain lines otherwise), one line per epoch."""
from __future__ import annotations

import sys

import torch.nn as nn

import dropit
from dropit.lab.train.config import RunConfig
from dropit.lab.units import MiB


class Console:
    """Progress for rank 0 (``enabled``); silent on the other ranks."""

    def __init__(self, enabled: bool, every: int):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.every = every
        self.bar = None

    def start_epoch(self, epoch: int, epochs: int, total: int) -> None:
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)

    def step(self, state, i: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{state.loss:.3f}", lr=f"{state.lr:.3g}")
        elif self.enabled and (i + 1) % self.every == 0:
            print(f"epoch {state.epoch + 1} step {i + 1}/{total} loss {state.loss:.4f} lr {state.lr:.4g}", flush=True)

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)


def banner(cfg: RunConfig, model: nn.Module, *, n_train: int, n_val: int, steps_per_epoch: int, world: int,
           device) -> str:
    """The run's first line: model, data, schedule, devices, and what DropIT converted."""
    n_drop = sum(1 for _, _, f in dropit.converted_modules(model) if f.kind != "relu")
    how = [name for name, on in (("compiled", cfg.compile), ("channels-last", cfg.channels_last)) if on]
    return (f"{cfg.label or cfg.model}: {cfg.model} on {cfg.dataset} ({n_train} train / {n_val} val images), "
            f"{cfg.epochs} epochs x {steps_per_epoch} steps, batch {cfg.batch_size} on {world} x {device}, "
            + (f"DropIT gamma={cfg.dropit_gamma} {cfg.dropit_strategy} ({n_drop} modules converted)" if cfg.dropit
               else "no DropIT")
            + "".join(f", {h}" for h in how))


def epoch_line(row: dict, epochs: int) -> str:
    """One finished epoch: training loss and top-1, validation, cache, peak, throughput."""
    vt = "" if row["val_top1"] is None else f" val top1 {row['val_top1']:.2f} top5 {row['val_top5']:.2f}"
    cache = "" if row["cache_bytes"] is None else f" cache {row['cache_bytes'] / MiB:.1f} MiB"
    return (f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} top1 {row['train_top1']:.2f}{vt}"
            f"{cache} peak {row['peak_bytes'] / MiB:.0f} MiB {row['images_per_s'] or 0:.0f} img/s {row['train_s']:.1f}s")


def fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
