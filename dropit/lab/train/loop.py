"""Train and evaluate one run; the command line of the experiment layer.

    python -m dropit.lab.train params/smoke.yaml out_dir=runs/smoke epochs=2
    torchrun --standalone --nproc_per_node=2 -m dropit.lab.train params/smoke.yaml

or from Python (a notebook)::

    from dropit.lab.train.loop import run
    metrics = run("params/smoke.yaml", callbacks=[my_live_plot])

A run is a :class:`Trainer` going through its phases in order::

    build_data()      datasets, the sharded loaders, steps per epoch
    build_model()     model (DropIT-converted per the config), optimizer, schedule, AMP
    resume()          weights, optimizer, step, history and RNG from <out_dir>/checkpoint.pt
    begin()           DDP wrapper, the cache meter's sample, metrics.json's skeleton
    per epoch:
      train_epoch()     one pass over the training data (train_step() per batch)
      evaluate_epoch()  validation top-1/top-5, cache bytes, the epoch's metrics row
      save_checkpoint() after whole epochs only
      write_results()   metrics.json, then the on_epoch callbacks
    finish()          final status, metrics.json, the on_end callbacks

Each run writes ``<out_dir>/metrics.json`` (after every epoch, atomically)::

    {"config": {...}, "status": "done" | "stopped" | "running",
     "epochs": [{"epoch", "train_loss", "train_top1", "val_top1", "val_top5",
                 "cache_bytes", "peak_bytes", "images_per_s", "epoch_s", ...}, ...],
     "per_step": [{"step", "epoch", "loss", "train_top1", "kept_bytes", "lr", "step_s"}, ...],
     "final": {"top1", "top5", "cache_bytes", "peak_bytes", "images_per_s",
               "train_loss", "wall_s", "step_kept_bytes", "step_s_median", ...},
     "environment": {"torch", "device", "world_size", "compile", "channels_last", ...}}

with accuracies in percent, and ``<out_dir>/checkpoint.pt`` after every epoch;
``resume=true`` continues from it and ends where an uninterrupted run would.
``cache_bytes`` is the memory meter's count of one extra training-mode forward
of ``cache_batch`` validation images per epoch; ``kept_bytes`` is what each
step's own forward kept for backward (:mod:`dropit.lab.train.step_memory`), recorded
every ``record_every`` steps and passed to the callbacks on every step.

``compile: true`` trains ``torch.compile(model)`` (after DDP wrapping, graph
breaks allowed); evaluation and the meter run the eager model, whose weights
are the same tensors: the eval-mode graph would be a second compilation, and
eager evaluation keeps accuracies comparable between compiled and eager runs.
``channels_last: true`` puts the model and every input batch in channels-last
memory format.

Callbacks are objects with any of ``on_step(state)``, ``on_epoch(state)`` and
``on_end(state)``; ``state`` is a :class:`TrainState`. Setting ``state.stop =
True`` ends training cleanly after the current step (the model is evaluated,
metrics written, the last full epoch's checkpoint kept). Under DDP callbacks run
on rank 0 and the stop flag is shared with all ranks.
"""
from __future__ import annotations

import contextlib
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from dropit.lab.io import write_json
from dropit.lab.train import checkpoint as ckpt
from dropit.lab.train.config import ConfigError, RunConfig, as_config, load_config
from dropit.lab.data.datasets import DatasetMissing, build_datasets
from dropit.lab.train.metrics import Meter, all_reduce_max, topk_correct
from dropit.lab.models.catalog import apply_dropit, build_model
from dropit.lab.train.optim import Schedule, build_optimizer
from dropit.lab.train.runtime import Dist, environment, peak_rss_bytes, rss_bytes
from dropit.lab.train.step_memory import StepMemory


@dataclass
class TrainState:
    """What callbacks see; set ``stop = True`` to end training cleanly."""

    config: RunConfig
    epochs: int
    steps_per_epoch: int
    epoch: int = 0  # 0-based epoch in progress (or just finished, in on_epoch)
    step: int = 0  # optimizer steps taken in all
    loss: float = float("nan")  # training loss of the last step
    lr: float = 0.0
    images: int = 0  # training images seen in this epoch, all ranks
    metrics: list[dict] = field(default_factory=list)  # one dict per finished epoch
    final: dict | None = None  # set before on_end
    stop: bool = False
    model: nn.Module | None = None  # the (unwrapped) model being trained
    total_steps: int = 0  # steps this run ends at (epochs x steps per epoch, or max_steps)
    train_top1: float = float("nan")  # running training top-1 (percent) of this epoch, this process
    kept_bytes: int | None = None  # bytes the last step's forward kept for backward (None: none saved)
    step_s: float = float("nan")  # seconds of the last step (data loading excluded)


def _as_list(callbacks) -> list:
    if callbacks is None:
        return []
    if isinstance(callbacks, (list, tuple)):
        return list(callbacks)
    return [callbacks]


def _emit(callbacks: list, event: str, state: TrainState) -> None:
    for cb in callbacks:
        fn: Callable | None = getattr(cb, event, None)
        if fn is not None:
            fn(state)


_warned_meter = False


def measure_cache_bytes(model: nn.Module, sample: torch.Tensor) -> tuple[int | None, int | None]:
    """(``dropit.measure_cache(model, sample).total_bytes``, its CUDA peak or None), leaving no trace.

    The model's buffers (BatchNorm statistics) and the RNG states are restored
    afterwards, so measuring does not change the run. Returns None (and warns
    once) when the core has no meter. The CUDA peak of that one training
    forward (weights and transients included) is the paper's "Cache (MB)".
    """
    global _warned_meter
    import dropit

    meter = getattr(dropit, "measure_cache", None)
    if meter is None:
        if not _warned_meter:
            warnings.warn("dropit.measure_cache is not in this version of the core; cache_bytes is recorded as null")
            _warned_meter = True
        return None, None
    was_training = model.training
    buffers = [b.detach().clone() for b in model.buffers()]
    devices = [sample.device] if sample.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        model.train()
        report = meter(model, sample)
    with torch.no_grad():
        for b, saved in zip(model.buffers(), buffers):
            b.copy_(saved)
    model.train(was_training)
    peak = getattr(report, "peak_cuda_bytes", None)
    return int(report.total_bytes), (int(peak) if peak is not None else None)


class _Log:
    """Progress for rank 0: a tqdm bar on a terminal, plain lines otherwise."""

    def __init__(self, enabled: bool, every: int):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.every = every
        self.bar = None

    def start_epoch(self, epoch: int, epochs: int, total: int) -> None:
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)

    def step(self, state: TrainState, i: int, total: int) -> None:
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


# ---------------------------------------------------------------- evaluation


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
    return {"val_loss": meter.mean("loss"), "val_top1": meter.percent("top1"), "val_top5": meter.percent("top5"), "val_images": meter.n}


# ---------------------------------------------------------------- the run


def run(config: RunConfig | dict | str | Path, callbacks=None) -> dict:
    """Train and evaluate per ``config``; returns the metrics dict that is written to metrics.json."""
    cfg = as_config(config)
    callbacks = _as_list(callbacks)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d = Dist(cfg)
    try:
        return Trainer(cfg, d, callbacks).fit()
    finally:
        d.close()


@dataclass
class EpochStats:
    """What one pass over the training data measured, reduced over ranks."""

    meter: Meter  # loss / top-1 / top-5 sums and the image count
    train_s: float  # the slowest rank's training time
    partial: bool  # ended before its last step (stop flag or max_steps)
    peak: int  # memory peak of the pass, max over ranks
    peak_kind: str  # "cuda_max_allocated" or "cpu_peak_rss_growth"
    step_kept_bytes: int | None  # mean over the epoch's steps of what each forward kept for backward


class Trainer:
    """One run of the loop: the phases of the module docstring, in :meth:`fit`'s order.

    The phases share their results as attributes: ``build_data`` sets the
    datasets and loaders, ``build_model`` the model and its optimisation,
    ``resume`` the progress (``start_epoch``, ``step``, ``history``),
    ``begin`` the training ``model`` (DDP-wrapped when several processes run),
    ``state`` and ``result`` (metrics.json).
    """

    def __init__(self, cfg: RunConfig, d: Dist, callbacks: list):
        if cfg.amp == "fp16" and d.device.type != "cuda":
            raise ConfigError("amp='fp16' needs CUDA; use amp=bf16 or amp=none on CPU")
        if cfg.batch_size % d.world:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {d.world} processes")
        self.cfg, self.d, self.callbacks = cfg, d, callbacks
        self.out_dir = Path(cfg.out_dir)
        self.ckpt_path = self.out_dir / "checkpoint.pt"
        self.log = _Log(d.main, cfg.log_every)

    def fit(self) -> dict:
        """All phases; returns the metrics dict written to metrics.json."""
        cfg = self.cfg
        t_start = time.perf_counter()
        ckpt.seed_everything(cfg.seed + self.d.rank)
        self.build_data()
        self.build_model()
        self.resume()
        self.begin()
        self.t_session = time.perf_counter()
        self.startup_s = self.t_session - t_start
        for epoch in range(self.start_epoch, cfg.epochs):
            if self._steps_done():
                break
            stats = self.train_epoch(epoch)
            row = self.evaluate_epoch(epoch, stats)
            if cfg.checkpoint and not stats.partial:  # whole epochs only: resume repeats a cut one from its start
                self.save_checkpoint(epoch, row)
            self.write_results()
            if self.d.world > 1:
                self.state.stop = bool(all_reduce_max(float(self.state.stop), self.d.device))
            if self.state.stop:
                self.stopped = True
                break
        return self.finish()

    def _steps_done(self) -> bool:
        return self.cfg.max_steps is not None and self.step >= self.cfg.max_steps

    # ------------------------------------------------------------ 1. data

    def build_data(self) -> None:
        cfg, d = self.cfg, self.d
        self.train_ds, self.val_ds, self.num_classes = build_datasets(cfg)
        per_rank = cfg.batch_size // d.world
        self.sampler = DistributedSampler(self.train_ds, num_replicas=d.world, rank=d.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=False)
        self.generator = torch.Generator()
        pin = d.device.type == "cuda"
        self.train_loader = DataLoader(
            self.train_ds, batch_size=per_rank, sampler=self.sampler, num_workers=cfg.num_workers, drop_last=True,
            generator=self.generator, pin_memory=pin, persistent_workers=False,
        )
        val_shard = Subset(self.val_ds, list(range(d.rank, len(self.val_ds), d.world)))  # exact: no padding duplicates
        self.val_loader = DataLoader(val_shard, batch_size=(cfg.eval_batch_size or cfg.batch_size) // d.world or 1,
                                     shuffle=False, num_workers=cfg.num_workers, pin_memory=pin)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {len(self.train_ds)} training images (subset?)")

    # ------------------------------------------------------------ 2. model

    def build_model(self) -> None:
        cfg, d = self.cfg, self.d
        image_size = cfg.image_size or (32 if cfg.dataset == "cifar100" else 224)
        model = build_model(cfg.model, self.num_classes, image_size=image_size, weights=cfg.pretrained,
                            patch_size=cfg.patch_size)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.raw_model = apply_dropit(model, cfg).to(d.device, memory_format=self.memory_format)
        self.optimizer = build_optimizer(cfg, self.raw_model)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, Schedule(cfg, self.steps_per_epoch))
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.autocast = (lambda: torch.autocast(d.device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    # ------------------------------------------------------------ 3. resume

    def resume(self) -> None:
        """Progress from the checkpoint when ``resume`` is set and one exists, else from scratch."""
        cfg, d, log = self.cfg, self.d, self.log
        self.start_epoch, self.step, self.history, self.wall_before = 0, 0, [], 0.0
        self.per_step: list[dict] = []
        self.resumed_rng = None
        if not cfg.resume:
            return
        if not self.ckpt_path.is_file():
            log.line(f"resume=true but no checkpoint at {self.ckpt_path}: starting from scratch")
            return
        saved = ckpt.load_checkpoint(self.ckpt_path, map_location="cpu")
        self.raw_model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        self.start_epoch, self.step, self.history = saved["epoch"], saved["step"], saved["metrics"]
        self.per_step = saved.get("per_step", [])
        changed = _changed_keys(saved.get("config", {}), cfg.to_dict())
        if changed:
            log.line(f"warning: resuming with parameters that differ from the checkpoint's: {', '.join(changed)}")
        self.wall_before = saved.get("wall_s", 0.0)
        rngs = saved.get("rng", [])
        if len(rngs) == d.world:
            self.resumed_rng = rngs[d.rank]
        else:
            log.line(f"checkpoint has RNG states of {len(rngs)} processes, this run has {d.world}: reseeding")
        log.line(f"resumed from {self.ckpt_path} at epoch {self.start_epoch} (step {self.step})")

    # ------------------------------------------------------------ 4. begin

    def begin(self) -> None:
        """The training model, the cache meter's sample, metrics.json's skeleton and the banner line."""
        cfg, d = self.cfg, self.d
        self.model = self.raw_model
        if d.world > 1:
            ids = [d.device.index] if d.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.raw_model, device_ids=ids)
        self.compile_counts = _compile_counts() if cfg.compile else None
        if cfg.compile:
            self.model = torch.compile(self.model)
        self.step_memory = StepMemory(self.raw_model)
        self.step_times: list[float] = []
        self.cache_n = min(cfg.cache_batch or min(cfg.batch_size, 128), len(self.val_ds))
        self.cache_sample = (torch.stack([self.val_ds[i][0] for i in range(self.cache_n)])
                             .to(d.device, memory_format=self.memory_format) if d.main else None)
        env = {**environment(d), "compile": cfg.compile, "channels_last": cfg.channels_last}
        self.result: dict[str, Any] = {"config": cfg.to_dict(), "status": "running", "epochs": self.history,
                                       "per_step": self.per_step, "final": None, "environment": env}
        total = cfg.epochs * self.steps_per_epoch
        self.state = TrainState(config=cfg, epochs=cfg.epochs, steps_per_epoch=self.steps_per_epoch, step=self.step,
                                metrics=self.history, model=self.raw_model, lr=self.optimizer.param_groups[0]["lr"],
                                total_steps=min(total, cfg.max_steps) if cfg.max_steps is not None else total)
        if d.main:
            self.log.line(self._banner())
        if self.resumed_rng is not None:
            ckpt.set_rng_state(self.resumed_rng)
        self.rss0 = rss_bytes()
        self.stopped = False
        self.train_time_total = sum(e.get("train_s", 0.0) for e in self.history)
        self.images_total = sum(e.get("train_images", 0) for e in self.history)
        self.last_eval: dict[str, float] = next((e for e in reversed(self.history) if e.get("val_top1") is not None), {})

    def _banner(self) -> str:
        import dropit

        cfg, d = self.cfg, self.d
        n_drop = sum(1 for _, _, f in dropit.converted_modules(self.raw_model) if f.kind != "relu")
        how = [name for name, on in (("compiled", cfg.compile), ("channels-last", cfg.channels_last)) if on]
        return (f"{cfg.label or cfg.model}: {cfg.model} on {cfg.dataset} ({len(self.train_ds)} train / {len(self.val_ds)} val images), "
                f"{cfg.epochs} epochs x {self.steps_per_epoch} steps, batch {cfg.batch_size} on {d.world} x {d.device}, "
                + (f"DropIT gamma={cfg.dropit_gamma} {cfg.dropit_strategy} ({n_drop} modules converted)" if cfg.dropit else "no DropIT")
                + "".join(f", {h}" for h in how))

    # ------------------------------------------------------------ 5. one epoch

    def train_step(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward and optimizer step of one batch; (loss, logits)."""
        cfg = self.cfg
        with self.autocast():
            with self.step_memory:
                logits = self.model(images)
            loss = self.loss_fn(logits.float(), targets)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
        self.scheduler.step()
        return loss, logits

    def train_epoch(self, epoch: int) -> EpochStats:
        """One pass over the training data; the on_step callbacks after every step."""
        cfg, d, state = self.cfg, self.d, self.state
        state.epoch = epoch
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(cfg.seed * 100_003 + epoch * 1_009 + d.rank)  # worker seeds: a function of the epoch
        if d.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(d.device)
        self.model.train()
        meter = Meter()
        self.log.start_epoch(epoch, cfg.epochs, self.steps_per_epoch)
        t0 = time.perf_counter()
        kept = []
        for i, (images, targets) in enumerate(self.train_loader):
            images = images.to(d.device, non_blocking=True, memory_format=self.memory_format)
            targets = targets.to(d.device, non_blocking=True)
            t_step = time.perf_counter()
            loss, logits = self.train_step(images, targets)
            self.step += 1
            n = len(targets)
            c1, c5 = topk_correct(logits.detach().float(), targets)
            state.loss = loss.item()  # waits for the step to finish (also on CUDA)
            state.step_s = time.perf_counter() - t_step
            self.step_times.append(state.step_s)
            meter.update(n, loss=state.loss * n, top1=c1, top5=c5)
            state.step, state.lr, state.images = self.step, self.optimizer.param_groups[0]["lr"], meter.n * d.world
            state.train_top1, state.kept_bytes = meter.percent("top1"), self.step_memory.bytes
            if state.kept_bytes is not None:
                kept.append(state.kept_bytes)
            self._record_step(state)
            if d.main:
                _emit(self.callbacks, "on_step", state)
            self.log.step(state, i, self.steps_per_epoch)
            if d.world > 1:
                state.stop = bool(all_reduce_max(float(state.stop), d.device))
            if state.stop or self._steps_done():
                break
        if d.device.type == "cuda":
            torch.cuda.synchronize(d.device)
        train_s = time.perf_counter() - t0
        self.log.end_epoch()
        self.stopped = state.stop

        # memory of the training part of the epoch, max over ranks
        if d.device.type == "cuda":
            peak, peak_kind = torch.cuda.max_memory_allocated(d.device), "cuda_max_allocated"
        else:
            peak, peak_kind = max(0, peak_rss_bytes() - self.rss0), "cpu_peak_rss_growth"
        peak = int(all_reduce_max(peak, d.device))
        meter.all_reduce(d.device)
        kept_mean = int(sum(kept) / len(kept)) if kept else None
        return EpochStats(meter, all_reduce_max(train_s, d.device), i + 1 < self.steps_per_epoch, peak, peak_kind, kept_mean)

    def _record_step(self, state: TrainState) -> None:
        every = self.cfg.record_every
        if every and self.step % every == 0:
            self.per_step.append({"step": self.step, "epoch": state.epoch + 1, "loss": state.loss,
                                  "train_top1": state.train_top1, "kept_bytes": state.kept_bytes,
                                  "lr": state.lr, "step_s": state.step_s})

    # ------------------------------------------------------------ 6. evaluate

    def evaluate_epoch(self, epoch: int, stats: EpochStats) -> dict:
        """Validation (every ``eval_every`` epochs and after the last), cache bytes; the epoch's row of metrics.json."""
        cfg, d = self.cfg, self.d
        last_one = epoch + 1 == cfg.epochs or self.stopped or stats.partial or self._steps_done()
        do_eval = (epoch + 1) % cfg.eval_every == 0 or last_one
        if do_eval:
            self.last_eval = evaluate(self.raw_model, self.val_loader, d.device, self.autocast, self.memory_format)
        cache_bytes, cache_peak = measure_cache_bytes(self.raw_model, self.cache_sample) if d.main else (None, None)

        self.train_time_total += stats.train_s
        self.images_total += stats.meter.n
        meter, ev = stats.meter, self.last_eval
        row = {
            "epoch": epoch + 1,
            "steps": self.step,
            "lr": self.state.lr,
            "train_loss": meter.mean("loss"),
            "train_top1": meter.percent("top1"),
            "train_top5": meter.percent("top5"),
            "val_loss": ev.get("val_loss") if do_eval else None,
            "val_top1": ev.get("val_top1") if do_eval else None,
            "val_top5": ev.get("val_top5") if do_eval else None,
            "cache_bytes": cache_bytes,
            "cache_peak_cuda_bytes": cache_peak,
            "cache_batch": self.cache_n,
            "step_kept_bytes": stats.step_kept_bytes,
            "peak_bytes": stats.peak,
            "peak_kind": stats.peak_kind,
            "train_images": meter.n,
            "images_per_s": meter.n / stats.train_s if stats.train_s > 0 else None,
            "train_s": stats.train_s,
            "wall_s": self._wall_s(),
            "partial": stats.partial,
        }
        self.history.append(row)
        self.state.metrics = self.history
        if d.main:
            vt = "" if row["val_top1"] is None else f" val top1 {row['val_top1']:.2f} top5 {row['val_top5']:.2f}"
            cache = "" if cache_bytes is None else f" cache {cache_bytes / 2**20:.1f} MiB"
            self.log.line(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} top1 {row['train_top1']:.2f}{vt}"
                          f"{cache} peak {stats.peak / 2**20:.0f} MiB {row['images_per_s'] or 0:.0f} img/s {row['train_s']:.1f}s")
        return row

    def _wall_s(self) -> float:
        return self.wall_before + time.perf_counter() - self.t_session

    # ------------------------------------------------------------ 7. results

    def save_checkpoint(self, epoch: int, row: dict) -> None:
        """``<out_dir>/checkpoint.pt`` (atomically, rank 0) with every rank's RNG state."""
        d = self.d
        rngs = [None] * d.world
        if d.world > 1:
            dist.all_gather_object(rngs, ckpt.rng_state())
        else:
            rngs = [ckpt.rng_state()]
        if d.main:
            ckpt.save_checkpoint(self.ckpt_path, {
                "model": self.raw_model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict() if self.scaler else None,
                "epoch": epoch + 1, "step": self.step, "metrics": self.history, "per_step": self.per_step, "rng": rngs,
                "wall_s": row["wall_s"], "config": self.cfg.to_dict(),
            })

    def _final(self, wall_s: float) -> dict:
        final = _final(self.history, self.last_eval, self.train_time_total, self.images_total, wall_s,
                       len(self.train_ds), self.step, self.stopped)
        times = sorted(self.step_times)
        final["step_s_median"] = times[len(times) // 2] if times else None  # this session's steps
        if self.compile_counts is not None:
            now = _compile_counts()
            final["compile"] = {k: now[k] - self.compile_counts[k] for k in now}
        return final

    def write_results(self) -> None:
        """The final block so far into metrics.json (rank 0), then the on_epoch callbacks."""
        self.result["final"] = self._final(self._wall_s())
        if self.d.main:
            write_json(self.out_dir / "metrics.json", self.result)
            _emit(self.callbacks, "on_epoch", self.state)

    def finish(self) -> dict:
        """Status and final metrics into metrics.json, then the on_end callbacks; the metrics dict."""
        result = self.result
        if result["final"] is None:  # nothing left to train (resumed a finished run, or max_steps reached)
            result["final"] = self._final(self.wall_before)
        result["final"]["startup_s"] = self.startup_s
        result["status"] = "stopped" if self.stopped else "done"
        self.state.final = result["final"]
        if self.d.main:
            path = self.out_dir / "metrics.json"
            write_json(path, result)
            self.log.line(f"wrote {path}: top1 {_fmt(result['final']['top1'])} top5 {_fmt(result['final']['top5'])}")
            _emit(self.callbacks, "on_end", self.state)
        return result


_RUN_CONTROL = {"resume", "out_dir", "label", "epochs", "max_steps", "log_every", "num_workers", "threads",
                "device", "checkpoint", "eval_every", "data_dir", "download", "paper_row", "eval_batch_size",
                "record_every", "compile", "channels_last"}


def _changed_keys(saved: dict, now: dict) -> list[str]:
    return sorted(k for k in now if k not in _RUN_CONTROL and k in saved and saved[k] != now[k])


def _compile_counts() -> dict[str, int]:
    """Graphs dynamo compiled and graph breaks it hit so far in this process (its counters)."""
    from torch._dynamo.utils import counters

    return {"graphs": int(counters["stats"]["unique_graphs"]), "graph_breaks": int(sum(counters["graph_break"].values()))}


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _final(history, last_eval, train_time, images, wall_s, train_images, step, stopped) -> dict:
    last = history[-1] if history else {}
    caches = [e["cache_bytes"] for e in history if e.get("cache_bytes") is not None]
    peaks = [e["peak_bytes"] for e in history if e.get("peak_bytes") is not None]
    return {
        "top1": last_eval.get("val_top1"),
        "top5": last_eval.get("val_top5"),
        "val_loss": last_eval.get("val_loss"),
        "val_images": last_eval.get("val_images"),
        "train_loss": last.get("train_loss"),
        "train_top1": last.get("train_top1"),
        "cache_bytes": caches[-1] if caches else None,
        "cache_peak_cuda_bytes": last.get("cache_peak_cuda_bytes"),
        "step_kept_bytes": last.get("step_kept_bytes"),
        "peak_bytes": max(peaks) if peaks else None,
        "peak_kind": last.get("peak_kind"),
        "images_per_s": images / train_time if train_time > 0 else None,
        "wall_s": wall_s,
        "epochs_completed": sum(1 for e in history if not e.get("partial")),
        "steps": step,
        "train_images": train_images,
        "stopped": stopped,
    }


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[1] if __doc__ else "", file=sys.stderr)
        print("usage: python -m dropit.lab.train [PARAMS.yaml] [key=value ...]", file=sys.stderr)
        return 0 if argv else 2
    path = None
    if "=" not in argv[0]:
        path, argv = argv[0], argv[1:]
    try:
        cfg = load_config(path, argv)
        run(cfg)
    except (ConfigError, DatasetMissing) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
