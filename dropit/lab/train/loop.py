"""Train and evaluate one run; the command line of the experiment layer.

    python -m dropit.lab.train params/smoke.yaml out_dir=runs/smoke epochs=2
    torchrun --standalone --nproc_per_node=2 -m dropit.lab.train params/smoke.yaml

or from Python (a notebook)::

    from dropit.lab.train.loop import run
    metrics = run("params/smoke.yaml", callbacks=[my_live_plot])

A run is a :class:`Trainer`. Its ``_setup_*`` methods each build one part and
return it (the data, the model, its optimisation, the progress restored from a
checkpoint, the model the steps run, the state callbacks see); then each epoch
is :meth:`~Trainer.train_epoch`, :meth:`~Trainer.evaluate_epoch`,
:meth:`~Trainer.save_checkpoint` and :meth:`~Trainer.write_results`, and
:meth:`~Trainer.finish` ends the run. ``<out_dir>/metrics.json`` is written
after every epoch (atomically; its layout is in :mod:`dropit.lab.train.results`),
``<out_dir>/checkpoint.pt`` after every whole epoch; ``resume=true`` continues
from it and ends where an uninterrupted run would.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from dropit.lab.data.datasets import DatasetMissing, build_datasets
from dropit.lab.io import write_json
from dropit.lab.models.catalog import apply_dropit, build_model, default_image_size
from dropit.lab.models.weights import WeightsMissing, resolve_weights
from dropit.lab.train import checkpoint as ckpt
from dropit.lab.train import results
from dropit.lab.train.config import ConfigError, RunConfig, as_config, load_config
from dropit.lab.train.console import Console, banner, epoch_line, fmt
from dropit.lab.train.evaluate import evaluate, measure_cache
from dropit.lab.train.metrics import Meter, all_reduce_max, topk_correct
from dropit.lab.train.optim import Schedule, build_optimizer
from dropit.lab.train.results import EpochStats
from dropit.lab.train.runtime import Dist, PeakMemory, compile_counts, environment
from dropit.lab.train.step_memory import StepMemory


@dataclass
class TrainState:
    """What callbacks see, and the one record of the run's progress; set ``stop = True`` to end training cleanly."""

    config: RunConfig
    epochs: int
    steps_per_epoch: int
    epoch: int = 0  # 0-based epoch in progress (or just finished, in on_epoch)
    step: int = 0  # optimizer steps taken in all
    loss: float = float("nan")  # training loss of the last step
    lr: float = 0.0
    images: int = 0  # training images seen in this epoch, all ranks
    metrics: list[dict] = field(default_factory=list)  # one row per finished epoch (metrics.json's "epochs")
    final: dict | None = None  # set before on_end
    stop: bool = False
    model: nn.Module | None = None  # the (unwrapped) model being trained
    total_steps: int = 0  # steps this run ends at (epochs x steps per epoch, or max_steps)
    train_top1: float = float("nan")  # running training top-1 (percent) of this epoch, this process
    kept_bytes: int | None = None  # bytes the last step's forward kept for backward (None: none saved)
    step_s: float = float("nan")  # seconds of the last step (data loading excluded)


@dataclass
class Data:
    """The datasets and this rank's loaders."""

    train: Dataset
    val: Dataset
    num_classes: int
    sampler: DistributedSampler  # reshuffles per epoch (set_epoch)
    generator: torch.Generator  # seeds the loader's workers, reseeded per epoch
    train_loader: DataLoader
    val_loader: DataLoader

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)


@dataclass
class Optimization:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None  # fp16 only


@dataclass
class Progress:
    """Where training starts: a checkpoint's epoch, step, records and RNG state, or zero."""

    epoch: int = 0  # the next epoch to train
    step: int = 0
    rows: list[dict] = field(default_factory=list)
    per_step: list[dict] = field(default_factory=list)
    wall_s: float = 0.0  # wall time of the sessions before this one
    rng: dict | None = None  # this rank's RNG state at the checkpoint


@dataclass
class Clock:
    """Wall time of the run: earlier sessions' (from the checkpoint) plus this one's."""

    before: float
    start: float = field(default_factory=time.perf_counter)

    def wall_s(self) -> float:
        return self.before + time.perf_counter() - self.start


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


def run(config: RunConfig | dict | str | Path, callbacks=None) -> dict:
    """Train and evaluate per ``config``; returns the metrics dict that is written to metrics.json."""
    cfg = as_config(config)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d = Dist(cfg)
    try:
        return Trainer(cfg, d, _as_list(callbacks)).fit()
    finally:
        d.close()


class Trainer:
    """One run: the parts :meth:`_setup` builds, then the epochs, then :meth:`finish`."""

    def __init__(self, cfg: RunConfig, d: Dist, callbacks: list):
        if cfg.amp == "fp16" and d.device.type != "cuda":
            raise ConfigError("amp='fp16' needs CUDA; use amp=bf16 or amp=none on CPU")
        if cfg.batch_size % d.world:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {d.world} processes")
        self.cfg, self.d, self.callbacks = cfg, d, callbacks
        self.console = Console(d.main, cfg.log_every)
        self.out_dir = Path(cfg.out_dir)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.autocast = (lambda: torch.autocast(d.device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def fit(self) -> dict:
        """All phases; returns the metrics dict written to metrics.json."""
        t_start = time.perf_counter()
        start_epoch = self._setup()
        self.startup_s = self.clock.start - t_start
        for epoch in range(start_epoch, self.cfg.epochs):
            if self._steps_done():
                break
            stats = self.train_epoch(epoch)
            row = self.evaluate_epoch(stats)
            if self.cfg.checkpoint and not stats.partial:  # whole epochs only: resume repeats a cut one from its start
                self.save_checkpoint(row)
            self.write_results()
            self._share_stop()
            if self.state.stop:
                break
        return self.finish()

    def _setup(self) -> int:
        """Every part of the run, in an order that keeps resumed runs exact; the epoch to start at."""
        cfg, d = self.cfg, self.d
        ckpt.seed_everything(cfg.seed + d.rank)
        self.weights_file = self._setup_weights()  # first: missing weights stop the run before any work
        self.data = self._setup_data()
        self.model = self._setup_model(self.data.num_classes)
        self.opt = self._setup_optimization(self.model)
        progress = self._setup_progress()
        self.compile_base = compile_counts() if cfg.compile else None
        self.train_model = self._setup_training_model(self.model)
        self.state = self._setup_state(progress)
        self.per_step, self.step_times = progress.per_step, []
        self.last_eval = results.last_evaluation(progress.rows)
        self.step_memory = StepMemory(self.model)
        self.cache_sample = self._setup_cache_sample()
        self.console.line(banner(cfg, self.model, n_train=len(self.data.train), n_val=len(self.data.val),
                                 steps_per_epoch=self.data.steps_per_epoch, world=d.world, device=d.device))
        if progress.rng is not None:
            ckpt.set_rng_state(progress.rng)
        self.peak = PeakMemory(d.device)
        self.clock = Clock(before=progress.wall_s)
        return progress.epoch

    def _steps_done(self) -> bool:
        return self.cfg.max_steps is not None and self.state.step >= self.cfg.max_steps

    # ------------------------------------------------------------ the parts

    def _setup_weights(self) -> Path | None:
        """The local file of ``pretrained`` (named weights fetched into ``weights_dir`` first if absent), or None."""
        cfg = self.cfg
        if not cfg.pretrained:
            return None
        return resolve_weights(cfg.pretrained, cache_dir=cfg.weights_dir, download=cfg.download)

    def _setup_data(self) -> Data:
        """Datasets, the training sampler (sharded over ranks) and both loaders."""
        cfg, d = self.cfg, self.d
        train_ds, val_ds, num_classes = build_datasets(cfg)
        if cfg.data_on_device:
            return self._tensor_data(train_ds, val_ds, num_classes)
        sampler = DistributedSampler(train_ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed,
                                     drop_last=False)
        generator = torch.Generator()
        pin = d.device.type == "cuda"
        train_loader = DataLoader(train_ds, batch_size=cfg.batch_size // d.world, sampler=sampler,
                                  num_workers=cfg.num_workers, drop_last=True, generator=generator, pin_memory=pin,
                                  persistent_workers=False)
        val_shard = Subset(val_ds, list(range(d.rank, len(val_ds), d.world)))  # exact: no padding duplicates
        val_loader = DataLoader(val_shard, batch_size=(cfg.eval_batch_size or cfg.batch_size) // d.world or 1,
                                shuffle=False, num_workers=cfg.num_workers, pin_memory=pin)
        if len(train_loader) == 0:
            raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {len(train_ds)} training images (subset?)")
        return Data(train_ds, val_ds, num_classes, sampler, generator, train_loader, val_loader)

    def _tensor_data(self, train_ds: Dataset, val_ds: Dataset, num_classes: int) -> Data:
        """``data_on_device``: both splits as uint8 tensors on the device, batches augmented there (TensorLoader)."""
        from dropit.lab.data.datasets import mean_std
        from dropit.lab.data.tensor_loader import TensorLoader, uint8_images_of

        cfg, d = self.cfg, self.d
        stats = dict(zip(("mean", "std"), mean_std(cfg.dataset, cfg.mean_std)), device=d.device, rank=d.rank, world=d.world)
        train = TensorLoader(*uint8_images_of(train_ds), batch_size=cfg.batch_size // d.world, seed=cfg.seed, **stats)
        val = TensorLoader(*uint8_images_of(val_ds), batch_size=(cfg.eval_batch_size or cfg.batch_size) // d.world or 1,
                           train=False, **stats)
        if len(train) == 0:
            raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {len(train_ds)} training images (subset?)")
        return Data(train_ds, val_ds, num_classes, train, torch.Generator(), train, val)  # the loader is its own sampler

    def _setup_model(self, num_classes: int) -> nn.Module:
        """The model, DropIT-converted per the config, on the device in the run's memory format."""
        cfg = self.cfg
        image_size = cfg.image_size or default_image_size(cfg.model, cfg.dataset)
        model = build_model(cfg.model, num_classes, image_size=image_size, weights=self.weights_file,
                            patch_size=cfg.patch_size)
        return apply_dropit(model, cfg).to(self.d.device, memory_format=self.memory_format)

    def _setup_optimization(self, model: nn.Module) -> Optimization:
        cfg = self.cfg
        optimizer = build_optimizer(cfg, model)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, Schedule(cfg, self.data.steps_per_epoch))
        scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        return Optimization(optimizer, scheduler, scaler)

    def _setup_progress(self) -> Progress:
        """From ``<out_dir>/checkpoint.pt`` (weights and optimizer restored) when ``resume`` is set and it exists."""
        saved = self._load_checkpoint()
        if saved is None:
            return Progress()
        self._restore(saved)
        return self._progress_from(saved)

    def _setup_training_model(self, model: nn.Module) -> nn.Module:
        """The model the steps run: DDP-wrapped when several processes run, compiled when ``compile`` is set."""
        if self.d.world > 1:
            ids = [self.d.device.index] if self.d.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return self._compile(model)

    def _compile(self, model: nn.Module) -> nn.Module:
        """``torch.compile(model)`` when ``compile`` is set (graph breaks allowed), else the model itself;
        ``compile_memory_budget`` is the partitioner's budget, set for this model only (dropit.compile_budgeted)."""
        if not self.cfg.compile:
            return model
        import dropit

        return dropit.compile_budgeted(model, budget=self.cfg.compile_memory_budget)

    def _setup_state(self, progress: Progress) -> TrainState:
        cfg, spe = self.cfg, self.data.steps_per_epoch
        total = cfg.epochs * spe
        return TrainState(config=cfg, epochs=cfg.epochs, steps_per_epoch=spe, step=progress.step,
                          metrics=progress.rows, model=self.model, lr=self.opt.optimizer.param_groups[0]["lr"],
                          total_steps=min(total, cfg.max_steps) if cfg.max_steps is not None else total)

    def _cache_batch(self) -> int:
        return min(self.cfg.cache_batch or min(self.cfg.batch_size, 128), len(self.data.val))

    def _setup_cache_sample(self) -> torch.Tensor | None:
        """The first ``cache_batch`` validation images, whose kept bytes the meter counts each epoch (rank 0)."""
        if not self.d.main:
            return None
        images = torch.stack([self.data.val[i][0] for i in range(self._cache_batch())])
        return images.to(self.d.device, memory_format=self.memory_format)

    # ------------------------------------------------------------ resume

    @property
    def ckpt_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def _load_checkpoint(self) -> dict | None:
        if not self.cfg.resume:
            return None
        if not self.ckpt_path.is_file():
            self.console.line(f"resume=true but no checkpoint at {self.ckpt_path}: starting from scratch")
            return None
        return ckpt.load_checkpoint(self.ckpt_path, map_location="cpu")

    def _restore(self, saved: dict) -> None:
        """Weights, optimizer, schedule and scaler from a checkpoint; a warning for changed parameters."""
        self.model.load_state_dict(saved["model"])
        self.opt.optimizer.load_state_dict(saved["optimizer"])
        self.opt.scheduler.load_state_dict(saved["scheduler"])
        if self.opt.scaler is not None and saved.get("scaler"):
            self.opt.scaler.load_state_dict(saved["scaler"])
        changed = _changed_keys(saved.get("config", {}), self.cfg.to_dict())
        if changed:
            self.console.line(f"warning: resuming with parameters that differ from the checkpoint's: {', '.join(changed)}")

    def _progress_from(self, saved: dict) -> Progress:
        d = self.d
        rngs = saved.get("rng", [])
        if len(rngs) != d.world:
            self.console.line(f"checkpoint has RNG states of {len(rngs)} processes, this run has {d.world}: reseeding")
        progress = Progress(epoch=saved["epoch"], step=saved["step"], rows=saved["metrics"],
                            per_step=saved.get("per_step", []), wall_s=saved.get("wall_s", 0.0),
                            rng=rngs[d.rank] if len(rngs) == d.world else None)
        self.console.line(f"resumed from {self.ckpt_path} at epoch {progress.epoch} (step {progress.step})")
        return progress

    # ------------------------------------------------------------ one epoch

    def train_step(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward and optimizer step of one batch; (loss, logits)."""
        cfg, opt = self.cfg, self.opt
        with self.autocast():
            with self.step_memory:
                logits = self.train_model(images)
            loss = self.loss_fn(logits.float(), targets)
        opt.optimizer.zero_grad(set_to_none=True)
        if opt.scaler is not None:
            opt.scaler.scale(loss).backward()
            if cfg.grad_clip:
                opt.scaler.unscale_(opt.optimizer)
                nn.utils.clip_grad_norm_(self.train_model.parameters(), cfg.grad_clip)
            opt.scaler.step(opt.optimizer)
            opt.scaler.update()
        else:
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(self.train_model.parameters(), cfg.grad_clip)
            opt.optimizer.step()
        opt.scheduler.step()
        return loss, logits

    def train_epoch(self, epoch: int) -> EpochStats:
        """One pass over the training data; the on_step callbacks after every step."""
        self._start_epoch(epoch)
        meter, kept, steps = Meter(), [], 0
        t0 = time.perf_counter()
        for images, targets in self.data.train_loader:
            self._train_batch(images, targets, meter)
            steps += 1
            if self.state.kept_bytes is not None:
                kept.append(self.state.kept_bytes)
            self._record_step()
            self._announce_step(steps)
            self._share_stop()
            if self.state.stop or self._steps_done():
                break
        return self._end_epoch(meter, kept, t0, partial=steps < self.data.steps_per_epoch)

    def _start_epoch(self, epoch: int) -> None:
        cfg, d = self.cfg, self.d
        self.state.epoch = epoch
        self.data.sampler.set_epoch(epoch)
        self.data.generator.manual_seed(cfg.seed * 100_003 + epoch * 1_009 + d.rank)  # worker seeds: a function of the epoch
        self.peak.reset()
        self.train_model.train()
        self.console.start_epoch(epoch, cfg.epochs, self.data.steps_per_epoch)

    def _train_batch(self, images: torch.Tensor, targets: torch.Tensor, meter: Meter) -> None:
        """One step on one batch; its loss, accuracy, time and kept bytes into ``meter`` and the state."""
        d, state = self.d, self.state
        images = images.to(d.device, non_blocking=True, memory_format=self.memory_format)
        targets = targets.to(d.device, non_blocking=True)
        t_step = time.perf_counter()
        loss, logits = self.train_step(images, targets)
        c1, c5 = topk_correct(logits.detach().float(), targets)
        state.loss = loss.item()  # waits for the step to finish (also on CUDA)
        state.step_s = time.perf_counter() - t_step
        self.step_times.append(state.step_s)
        meter.update(len(targets), loss=state.loss * len(targets), top1=c1, top5=c5)
        state.step += 1
        state.lr, state.images = self.opt.optimizer.param_groups[0]["lr"], meter.n * d.world
        state.train_top1, state.kept_bytes = meter.percent("top1"), self.step_memory.bytes

    def _record_step(self) -> None:
        every = self.cfg.record_every
        if every and self.state.step % every == 0:
            self.per_step.append(results.step_row(self.state))

    def _announce_step(self, steps: int) -> None:
        """The on_step callbacks (rank 0), then the progress bar or line."""
        if self.d.main:
            _emit(self.callbacks, "on_step", self.state)
        self.console.step(self.state, steps - 1, self.data.steps_per_epoch)

    def _share_stop(self) -> None:
        """Under DDP, any rank's stop flag (set by rank 0's callbacks) stops all of them."""
        if self.d.world > 1:
            self.state.stop = bool(all_reduce_max(float(self.state.stop), self.d.device))

    def _end_epoch(self, meter: Meter, kept: list[int], t0: float, *, partial: bool) -> EpochStats:
        """The pass's time, peak memory and sums, reduced over ranks."""
        d = self.d
        if d.device.type == "cuda":
            torch.cuda.synchronize(d.device)
        train_s = time.perf_counter() - t0
        self.console.end_epoch()
        peak, peak_kind = self.peak.read()
        peak = int(all_reduce_max(peak, d.device))
        meter.all_reduce(d.device)
        kept_mean = int(sum(kept) / len(kept)) if kept else None
        return EpochStats(meter, all_reduce_max(train_s, d.device), partial, peak, peak_kind, kept_mean)

    # ------------------------------------------------------------ after the epoch

    def evaluate_epoch(self, stats: EpochStats) -> dict:
        """Validation (every ``eval_every`` epochs and after the last) and cache bytes; the epoch's row, appended."""
        cfg, d, state = self.cfg, self.d, self.state
        last_one = state.epoch + 1 == cfg.epochs or state.stop or stats.partial or self._steps_done()
        evaluated = None
        if (state.epoch + 1) % cfg.eval_every == 0 or last_one:
            evaluated = evaluate(self.model, self.data.val_loader, d.device, self.autocast, self.memory_format)
            self.last_eval = evaluated
        cache = measure_cache(self.model, self.cache_sample) if d.main else (None, None)
        row = results.epoch_row(state, stats, evaluated, (*cache, self._cache_batch()), wall_s=self.clock.wall_s())
        state.metrics.append(row)
        self.console.line(epoch_line(row, cfg.epochs))
        return row

    def save_checkpoint(self, row: dict) -> None:
        """``<out_dir>/checkpoint.pt`` (atomically, rank 0) with every rank's RNG state."""
        d, state, opt = self.d, self.state, self.opt
        rngs = [None] * d.world
        if d.world > 1:
            dist.all_gather_object(rngs, ckpt.rng_state())
        else:
            rngs = [ckpt.rng_state()]
        if d.main:
            ckpt.save_checkpoint(self.ckpt_path, {
                "model": self.model.state_dict(), "optimizer": opt.optimizer.state_dict(),
                "scheduler": opt.scheduler.state_dict(), "scaler": opt.scaler.state_dict() if opt.scaler else None,
                "epoch": state.epoch + 1, "step": state.step, "metrics": state.metrics, "per_step": self.per_step,
                "rng": rngs, "wall_s": row["wall_s"], "config": self.cfg.to_dict(),
            })

    def write_results(self) -> None:
        """metrics.json so far (rank 0), then the on_epoch callbacks."""
        if self.d.main:
            write_json(self.out_dir / "metrics.json", self._metrics("running", self._final()))
            _emit(self.callbacks, "on_epoch", self.state)

    def finish(self) -> dict:
        """Status and final metrics into metrics.json, then the on_end callbacks; the metrics dict."""
        state = self.state
        state.final = {**self._final(), "startup_s": self.startup_s}
        metrics = self._metrics("stopped" if state.stop else "done", state.final)
        if self.d.main:
            path = write_json(self.out_dir / "metrics.json", metrics)
            self.console.line(f"wrote {path}: top1 {fmt(state.final['top1'])} top5 {fmt(state.final['top5'])}")
            _emit(self.callbacks, "on_end", state)
        return metrics

    def _final(self) -> dict:
        state = self.state
        compiled = None
        if self.compile_base is not None:
            now = compile_counts()
            compiled = {k: now[k] - self.compile_base[k] for k in now}
        return results.final_block(state.metrics, self.last_eval, wall_s=self.clock.wall_s(),
                                   train_images=len(self.data.train), steps=state.step, stopped=state.stop,
                                   step_times=self.step_times, compile_counts=compiled)

    def _metrics(self, status: str, final: dict) -> dict[str, Any]:
        cfg = self.cfg
        env = {**environment(self.d), "compile": cfg.compile, "compile_memory_budget": cfg.compile_memory_budget,
               "channels_last": cfg.channels_last}
        return results.metrics_json(config=cfg.to_dict(), status=status, rows=self.state.metrics,
                                    per_step=self.per_step, final=final, environment=env)


_RUN_CONTROL = {"resume", "out_dir", "label", "epochs", "max_steps", "log_every", "num_workers", "threads",
                "device", "checkpoint", "eval_every", "data_dir", "download", "paper_row", "eval_batch_size",
                "record_every", "compile", "channels_last"}


def _changed_keys(saved: dict, now: dict) -> list[str]:
    """Parameters that change what is trained, set differently in the checkpoint's config."""
    return sorted(k for k in now if k not in _RUN_CONTROL and k in saved and saved[k] != now[k])


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
    except (ConfigError, DatasetMissing, WeightsMissing) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
