"""The optimiser and the learning-rate schedule of a run, from its RunConfig.

    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, Schedule(cfg, steps_per_epoch))
"""
from __future__ import annotations

import bisect
import math

import torch
import torch.nn as nn

from dropit.lab.models.catalog import classifier_name
from dropit.lab.train.config import RunConfig


class Schedule:
    """Learning-rate factor at a given optimizer step: linear warm-up, then multistep, cosine or constant."""

    def __init__(self, cfg: RunConfig, steps_per_epoch: int):
        self.cfg = cfg
        self.spe = steps_per_epoch

    def __call__(self, step: int) -> float:
        cfg = self.cfg
        epoch = step / self.spe  # fractional
        warm = cfg.warmup_epochs
        if warm > 0 and epoch < warm:
            return (step + 1) / (warm * self.spe)
        if cfg.schedule == "multistep":
            return cfg.lr_gamma ** bisect.bisect_right(cfg.milestones, epoch)
        if cfg.schedule == "cosine":
            t = min(1.0, (epoch - warm) / max(1e-12, cfg.epochs - warm))
            floor = cfg.min_lr / cfg.lr
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0


def build_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.head_lr_scale != 1.0:  # two groups, the body first (the run's reported lr is group 0's)
        head = {id(p) for p in model.get_submodule(classifier_name(model)).parameters()}
        params = [{"params": [p for p in params if id(p) not in head]},
                  {"params": [p for p in params if id(p) in head], "lr": cfg.lr * cfg.head_lr_scale}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)
