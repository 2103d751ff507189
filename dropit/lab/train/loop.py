"""Train and evaluate one run; the command line of the experiment layer.

    python -m dropit.lab.train params/smoke.yaml out_dir=runs/smoke epochs=2
    torchrun --standalone --nproc_per_node=2 -m dropit.lab.train params/smoke.yaml

or from Python (a notebook)::

    from dropit.lab.train.loop import run
    metrics = run("params/smoke.yaml", callbacks=[my_live_plot])

A run is a :class:`Trainer`, laid out like a recipe: :meth:`~Trainer.setup`
builds the run's :class:`Parts` by calling the ``_setup_*`` functions of this
module, each of which takes what it needs as arguments and returns what it
builds, and the run's :class:`TrainState`; :meth:`~Trainer.train` then runs
the epochs, one training step written out top to bottom inside it, and ends
the run. ``<out_dir>/metrics.json`` is written after every epoch (atomically;
its layout is in :mod:`dropit.lab.train.results`), ``<out_dir>/checkpoint.pt``
after every whole epoch; ``resume=true`` continues from it and ends where an
uninterrupted run would.

``compile: true`` trains ``torch.compile(model)`` (after DDP wrapping, graph
breaks allowed); evaluation and the meter run the eager model, whose weights
are the same tensors: the eval-mode graph would be a second compilation, and
eager evaluation keeps accuracies comparable between compiled and eager runs.
``channels_last: true`` puts the model and every input batch in channels-last
memory format. Before each step's forward the loop keys the sampling
strategies' hashed draws to the run (:func:`dropit.draws.seed_draws` of
``seed + 1000003 * rank`` and the optimizer steps taken so far); that touches
no random number generator.

Callbacks are objects with any of ``on_step(state)``, ``on_epoch(state)`` and
``on_end(state)``; ``state`` is a :class:`TrainState`. Setting ``state.stop =
True`` ends training cleanly after the current step (the model is evaluated,
metrics written, the last full epoch's checkpoint kept). Under DDP callbacks run
on rank 0 and the stop flag is shared with all ranks every
:data:`STOP_SHARE_EVERY` steps and at the end of each epoch, so there a stop
takes effect at the next of those.
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

from dropit.draws import seed_draws
from dropit.lab.data.datasets import DatasetMissing, build_datasets
from dropit.lab.data.tensor_loader import TensorLoader
from dropit.lab.io import write_json
from dropit.lab.models.catalog import apply_dropit, build_model, default_image_size
from dropit.lab.models.weights import WeightsMissing, resolve_weights
from dropit.lab.train import checkpoint as ckpt
from dropit.lab.train import results
from dropit.lab.train.config import RUN_CONTROL, ConfigError, RunConfig, as_config, load_config
from dropit.lab.train.console import Console, banner, epoch_line, fmt
from dropit.lab.train.evaluate import cache_figures, evaluate
from dropit.lab.train.metrics import Meter, all_reduce_max, topk_correct
from dropit.lab.train.optim import Schedule, build_optimizer
from dropit.lab.train.results import EpochStats
from dropit.lab.train.runtime import Dist, PeakMemory, compile_counts, environment, startup_problems
from dropit.lab.train.step_memory import StepMemory

STOP_SHARE_EVERY = 20  # under DDP, steps between the all-reduces of the stop flag (and one at each epoch's end)
DRAW_SEED_STRIDE = 1_000_003  # the draws' seed of rank r: seed + r * this


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
    # the rest of the record: metrics.json's "per_step", the times and evaluation its "final" reads
    start_epoch: int = 0  # the epoch this session starts at (a checkpoint's, or 0)
    per_step: list[dict] = field(default_factory=list)  # every record_every steps, resumed ones included
    step_times: list[float] = field(default_factory=list)  # seconds of this session's steps
    last_eval: dict = field(default_factory=dict)  # the last validation's figures
    wall_before: float = 0.0  # wall time of the sessions before this one (from the checkpoint)
    started: float = 0.0  # time.perf_counter() when this session's training began
    startup_s: float = 0.0  # seconds this session spent in setup

    def wall_s(self) -> float:
        """Wall time of the run: earlier sessions' plus this one's."""
        return self.wall_before + time.perf_counter() - self.started

    def steps_done(self) -> bool:
        """``max_steps`` reached."""
        return self.config.max_steps is not None and self.step >= self.config.max_steps


@dataclass
class Data:
    """The datasets and this rank's loaders.

    Either DataLoaders, with the DistributedSampler that shards and reshuffles
    the training set and the generator that seeds its workers, or TensorLoaders
    (``data_on_device``), which shard and shuffle themselves (no sampler).
    """

    train: Dataset
    val: Dataset
    num_classes: int
    train_loader: DataLoader | TensorLoader
    val_loader: DataLoader | TensorLoader
    sampler: DistributedSampler | None = None  # DataLoader path: reshuffles per epoch
    generator: torch.Generator | None = None  # DataLoader path: seeds the loader's workers, reseeded per epoch

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    def set_epoch(self, epoch: int, seed: int, rank: int) -> None:
        """The epoch whose order (and worker seeds, or crops) the next pass over ``train_loader`` draws."""
        if self.sampler is None:
            self.train_loader.set_epoch(epoch)
            return
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(seed * 100_003 + epoch * 1_009 + rank)  # worker seeds: a function of the epoch


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
class Parts:
    """What :meth:`Trainer.setup` builds, once; training changes the tensors inside, never these."""

    data: Data
    model: nn.Module  # the eager model: evaluated, measured, checkpointed
    train_model: nn.Module  # the one the steps run: the model DDP-wrapped and/or compiled
    opt: Optimization
    step_memory: StepMemory  # bytes each step's forward keeps
    cache_sample: torch.Tensor | None  # rank 0: the validation images the cache meter counts each epoch
    cache_batch: int
    peak: PeakMemory
    compile_base: dict | None  # dynamo's counts before this run (compiled runs)


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
        trainer = Trainer(cfg, d, _as_list(callbacks))
        trainer.setup()
        return trainer.train()
    finally:
        d.close()


class Trainer:
    """One run: :meth:`setup` builds its parts and state, :meth:`train` runs it to the end."""

    def __init__(self, cfg: RunConfig, d: Dist, callbacks: list):
        problems = startup_problems(cfg, d.device, d.world)
        if problems:
            raise ConfigError(problems[0])
        self.cfg, self.d, self.callbacks = cfg, d, callbacks
        self.console = Console(d.main, cfg.log_every)
        self.ckpt_path = Path(cfg.out_dir) / "checkpoint.pt"
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.autocast = (lambda: torch.autocast(d.device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.parts: Parts | None = None  # set by setup()
        self.state: TrainState | None = None  # set by setup()

    # ------------------------------------------------------------ setup

    def setup(self) -> None:
        """Every part of the run and its state, in an order that keeps resumed runs exact."""
        cfg, d, console = self.cfg, self.d, self.console
        t_start = time.perf_counter()
        ckpt.seed_everything(cfg.seed + d.rank)
        weights_file = _setup_weights(cfg)  # first: missing weights stop the run before any work
        data = _setup_data(cfg, d)
        model = _setup_model(cfg, data.num_classes, weights_file, d.device, self.memory_format)
        opt = _setup_optimization(cfg, model, data.steps_per_epoch)
        progress = _setup_progress(cfg, d, console, self.ckpt_path, model, opt)
        compile_base = compile_counts() if cfg.compile else None
        train_model = _setup_training_model(cfg, d, model)
        state = _setup_state(cfg, data.steps_per_epoch, progress, model, opt)
        step_memory = StepMemory(model)
        cache_batch = min(cfg.cache_batch or min(cfg.batch_size, 128), len(data.val))
        cache_sample = _setup_cache_sample(data.val, cache_batch, d.device, self.memory_format) if d.main else None
        console.line(banner(cfg, model, n_train=len(data.train), n_val=len(data.val),
                            steps_per_epoch=data.steps_per_epoch, world=d.world, device=d.device))
        if progress.rng is not None:
            ckpt.set_rng_state(progress.rng)
        peak = PeakMemory(d.device)
        self.parts = Parts(data, model, train_model, opt, step_memory, cache_sample, cache_batch, peak, compile_base)
        state.started = time.perf_counter()
        state.startup_s = state.started - t_start
        self.state = state

    # ------------------------------------------------------------ training

    def train(self) -> dict:
        """Every epoch from the state's start; then the final metrics. Returns the metrics dict of metrics.json."""
        cfg, d, p, state = self.cfg, self.d, self.parts, self.state
        opt, spe = p.opt, p.data.steps_per_epoch
        for epoch in range(state.start_epoch, cfg.epochs):
            if state.steps_done():
                break
            self._start_epoch(epoch)
            meter, kept, steps = Meter(), [], 0
            t0 = time.perf_counter()
            for images, targets in p.data.train_loader:
                # one step: forward (counting what it keeps), backward, optimizer and schedule
                images = images.to(d.device, non_blocking=True, memory_format=self.memory_format)
                targets = targets.to(d.device, non_blocking=True)
                t_step = time.perf_counter()
                seed_draws(cfg.seed + DRAW_SEED_STRIDE * d.rank, state.step)
                with self.autocast():
                    with p.step_memory:
                        logits = p.train_model(images)
                    loss = self.loss_fn(logits.float(), targets)
                _backward_and_step(loss, opt, p.train_model, cfg.grad_clip)
                # what the step measured, into the state
                c1, c5 = topk_correct(logits.detach().float(), targets)
                state.loss = loss.item()  # waits for the step to finish (also on CUDA)
                state.step_s = time.perf_counter() - t_step
                state.step_times.append(state.step_s)
                meter.update(len(targets), loss=state.loss * len(targets), top1=c1, top5=c5)
                state.step += 1
                steps += 1
                state.lr, state.images = opt.optimizer.param_groups[0]["lr"], meter.n * d.world
                state.train_top1, state.kept_bytes = meter.percent("top1"), p.step_memory.bytes
                if state.kept_bytes is not None:
                    kept.append(state.kept_bytes)
                if cfg.record_every and state.step % cfg.record_every == 0:
                    state.per_step.append(results.step_row(state))
                if d.main:
                    _emit(self.callbacks, "on_step", state)
                self.console.step(state, steps - 1, spe)
                if self._stop_now(steps) or state.steps_done():
                    break
            self._share_stop()  # every rank agrees before evaluating
            stats = self._epoch_stats(meter, kept, t0, partial=steps < spe)
            row = self._evaluate(stats)
            if cfg.checkpoint and not stats.partial:  # whole epochs only: resume repeats a cut one from its start
                self._save_checkpoint(row)
            self._write_results()
            self._share_stop()  # the on_epoch callbacks may have set it
            if state.stop:
                break
        return self._finish()

    def _start_epoch(self, epoch: int) -> None:
        cfg, p = self.cfg, self.parts
        self.state.epoch = epoch
        p.data.set_epoch(epoch, cfg.seed, self.d.rank)
        p.peak.reset()
        p.train_model.train()
        self.console.start_epoch(epoch, cfg.epochs, p.data.steps_per_epoch)

    def _stop_now(self, steps: int) -> bool:
        """Whether the stop flag ends the epoch after its ``steps``-th step: this process's flag at once; under
        DDP every rank's, shared every :data:`STOP_SHARE_EVERY` steps (all ranks must stop at the same step)."""
        if self.d.world == 1:
            return self.state.stop
        if steps % STOP_SHARE_EVERY:
            return False
        self._share_stop()
        return self.state.stop

    def _share_stop(self) -> None:
        """Under DDP, any rank's stop flag (set by rank 0's callbacks) stops all of them."""
        if self.d.world > 1:
            self.state.stop = bool(all_reduce_max(float(self.state.stop), self.d.device))

    def _epoch_stats(self, meter: Meter, kept: list[int], t0: float, *, partial: bool) -> EpochStats:
        """The pass's time, peak memory and sums, reduced over ranks."""
        d = self.d
        if d.device.type == "cuda":
            torch.cuda.synchronize(d.device)
        train_s = time.perf_counter() - t0
        self.console.end_epoch()
        peak, peak_kind = self.parts.peak.read()
        peak = int(all_reduce_max(peak, d.device))
        meter.all_reduce(d.device)
        kept_mean = int(sum(kept) / len(kept)) if kept else None
        return EpochStats(meter, all_reduce_max(train_s, d.device), partial, peak, peak_kind, kept_mean)

    def _evaluate(self, stats: EpochStats) -> dict:
        """Validation (every ``eval_every`` epochs and after the last) and cache bytes; the epoch's row, appended."""
        cfg, d, p, state = self.cfg, self.d, self.parts, self.state
        last_one = state.epoch + 1 == cfg.epochs or state.stop or stats.partial or state.steps_done()
        evaluated = None
        if (state.epoch + 1) % cfg.eval_every == 0 or last_one:
            evaluated = evaluate(p.model, p.data.val_loader, d.device, self.autocast, self.memory_format)
            state.last_eval = evaluated
        cache = cache_figures(p.model, p.cache_sample) if d.main else (None, None)
        row = results.epoch_row(state, stats, evaluated, (*cache, p.cache_batch), wall_s=state.wall_s())
        state.metrics.append(row)
        self.console.line(epoch_line(row, cfg.epochs))
        return row

    def _save_checkpoint(self, row: dict) -> None:
        """``<out_dir>/checkpoint.pt`` (atomically, rank 0) with every rank's RNG state."""
        d, p, state = self.d, self.parts, self.state
        rngs = [None] * d.world
        if d.world > 1:
            dist.all_gather_object(rngs, ckpt.rng_state())
        else:
            rngs = [ckpt.rng_state()]
        if d.main:
            ckpt.save_checkpoint(self.ckpt_path, {
                "model": p.model.state_dict(), "optimizer": p.opt.optimizer.state_dict(),
                "scheduler": p.opt.scheduler.state_dict(), "scaler": p.opt.scaler.state_dict() if p.opt.scaler else None,
                "epoch": state.epoch + 1, "step": state.step, "metrics": state.metrics, "per_step": state.per_step,
                "rng": rngs, "wall_s": row["wall_s"], "config": self.cfg.to_dict(),
            })

    def _write_results(self) -> None:
        """metrics.json so far (rank 0), then the on_epoch callbacks."""
        if self.d.main:
            write_json(Path(self.cfg.out_dir) / "metrics.json", self._metrics("running", self._final()))
            _emit(self.callbacks, "on_epoch", self.state)

    def _finish(self) -> dict:
        """Status and final metrics into metrics.json, then the on_end callbacks; the metrics dict."""
        state = self.state
        state.final = {**self._final(), "startup_s": state.startup_s}
        metrics = self._metrics("stopped" if state.stop else "done", state.final)
        if self.d.main:
            path = write_json(Path(self.cfg.out_dir) / "metrics.json", metrics)
            self.console.line(f"wrote {path}: top1 {fmt(state.final['top1'])} top5 {fmt(state.final['top5'])}")
            _emit(self.callbacks, "on_end", state)
        return metrics

    def _final(self) -> dict:
        p, state = self.parts, self.state
        compiled = None
        if p.compile_base is not None:
            now = compile_counts()
            compiled = {k: now[k] - p.compile_base[k] for k in now}
        return results.final_block(state.metrics, state.last_eval, wall_s=state.wall_s(),
                                   train_images=len(p.data.train), steps=state.step, stopped=state.stop,
                                   step_times=state.step_times, compile_counts=compiled)

    def _metrics(self, status: str, final: dict) -> dict[str, Any]:
        cfg = self.cfg
        env = {**environment(self.d), "compile": cfg.compile, "compile_memory_budget": cfg.compile_memory_budget,
               "channels_last": cfg.channels_last}
        sources = cfg.sources.to_dict() if cfg.sources is not None else None
        return results.metrics_json(config=cfg.to_dict(), config_sources=sources, status=status,
                                    rows=self.state.metrics, per_step=self.state.per_step, final=final,
                                    environment=env)


# ---------------------------------------------------------------- the parts: each takes what it needs, returns what it builds


def _backward_and_step(loss: torch.Tensor, opt: Optimization, model: nn.Module, grad_clip: float | None) -> None:
    """Backward of ``loss`` (scaled under fp16), gradients clipped to ``grad_clip``, the optimizer and schedule step."""
    opt.optimizer.zero_grad(set_to_none=True)
    if opt.scaler is not None:
        opt.scaler.scale(loss).backward()
        if grad_clip:
            opt.scaler.unscale_(opt.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
    else:
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.optimizer.step()
    opt.scheduler.step()


def _setup_weights(cfg: RunConfig) -> Path | None:
    """The local file of ``pretrained`` (named weights fetched into ``weights_dir`` first if absent), or None."""
    if not cfg.pretrained:
        return None
    return resolve_weights(cfg.pretrained, cache_dir=cfg.weights_dir, download=cfg.download)


def _setup_data(cfg: RunConfig, d: Dist) -> Data:
    """Datasets and this rank's loaders: DataLoaders over a DistributedSampler, or TensorLoaders (``data_on_device``)."""
    train_ds, val_ds, num_classes = build_datasets(cfg)
    batch, eval_batch = cfg.batch_size // d.world, (cfg.eval_batch_size or cfg.batch_size) // d.world or 1
    if cfg.data_on_device:
        data = _tensor_data(cfg, d, train_ds, val_ds, num_classes, batch, eval_batch)
    else:
        sampler = DistributedSampler(train_ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed,
                                     drop_last=False)
        generator = torch.Generator()
        pin = d.device.type == "cuda"
        train_loader = DataLoader(train_ds, batch_size=batch, sampler=sampler, num_workers=cfg.num_workers,
                                  drop_last=True, generator=generator, pin_memory=pin, persistent_workers=False)
        val_shard = Subset(val_ds, list(range(d.rank, len(val_ds), d.world)))  # exact: no padding duplicates
        val_loader = DataLoader(val_shard, batch_size=eval_batch, shuffle=False, num_workers=cfg.num_workers,
                                pin_memory=pin)
        data = Data(train_ds, val_ds, num_classes, train_loader, val_loader, sampler=sampler, generator=generator)
    if data.steps_per_epoch == 0:
        raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {len(train_ds)} training images (subset?)")
    return data


def _tensor_data(cfg: RunConfig, d: Dist, train_ds: Dataset, val_ds: Dataset, num_classes: int, batch: int,
                 eval_batch: int) -> Data:
    """``data_on_device``: both splits as uint8 tensors on the device, batches augmented there (TensorLoader)."""
    from dropit.lab.data.datasets import mean_std
    from dropit.lab.data.tensor_loader import uint8_images_of

    stats = dict(zip(("mean", "std"), mean_std(cfg.dataset, cfg.mean_std)), device=d.device, rank=d.rank, world=d.world)
    train = TensorLoader(*uint8_images_of(train_ds), batch_size=batch, seed=cfg.seed, **stats)
    val = TensorLoader(*uint8_images_of(val_ds), batch_size=eval_batch, train=False, **stats)
    return Data(train_ds, val_ds, num_classes, train, val)


def _setup_model(cfg: RunConfig, num_classes: int, weights_file: Path | None, device: torch.device,
                 memory_format: torch.memory_format) -> nn.Module:
    """The model, DropIT-converted per the config, on the device in the run's memory format."""
    image_size = cfg.image_size or default_image_size(cfg.model, cfg.dataset)
    model = build_model(cfg.model, num_classes, image_size=image_size, weights=weights_file, patch_size=cfg.patch_size,
                        fresh_head=cfg.fresh_head)
    return apply_dropit(model, cfg).to(device, memory_format=memory_format)


def _setup_optimization(cfg: RunConfig, model: nn.Module, steps_per_epoch: int) -> Optimization:
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, Schedule(cfg, steps_per_epoch))
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    return Optimization(optimizer, scheduler, scaler)


def _setup_progress(cfg: RunConfig, d: Dist, console: Console, path: Path, model: nn.Module,
                    opt: Optimization) -> Progress:
    """Where training starts. With ``resume`` and a checkpoint at ``path``: its progress, and its weights,
    optimizer, schedule and scaler loaded into ``model`` and ``opt``; else from zero."""
    if not cfg.resume:
        return Progress()
    if not path.is_file():
        console.line(f"resume=true but no checkpoint at {path}: starting from scratch")
        return Progress()
    saved = ckpt.load_checkpoint(path, map_location="cpu")
    model.load_state_dict(saved["model"])
    opt.optimizer.load_state_dict(saved["optimizer"])
    opt.scheduler.load_state_dict(saved["scheduler"])
    if opt.scaler is not None and saved.get("scaler"):
        opt.scaler.load_state_dict(saved["scaler"])
    changed = _changed_keys(saved.get("config", {}), cfg.to_dict())
    if changed:
        console.line(f"warning: resuming with parameters that differ from the checkpoint's: {', '.join(changed)}")
    rngs = saved.get("rng", [])
    if len(rngs) != d.world:
        console.line(f"checkpoint has RNG states of {len(rngs)} processes, this run has {d.world}: reseeding")
    progress = Progress(epoch=saved["epoch"], step=saved["step"], rows=saved["metrics"],
                        per_step=saved.get("per_step", []), wall_s=saved.get("wall_s", 0.0),
                        rng=rngs[d.rank] if len(rngs) == d.world else None)
    console.line(f"resumed from {path} at epoch {progress.epoch} (step {progress.step})")
    return progress


def _setup_training_model(cfg: RunConfig, d: Dist, model: nn.Module) -> nn.Module:
    """The model the steps run: DDP-wrapped when several processes run, compiled when ``compile`` is set."""
    if d.world > 1:
        ids = [d.device.index] if d.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return compile_model(cfg, model)


def compile_model(cfg: RunConfig, model: nn.Module) -> nn.Module:
    """``torch.compile(model)`` when ``compile`` is set (graph breaks allowed), else the model itself;
    ``compile_memory_budget`` is the partitioner's budget, set for this model only (dropit.compile_budgeted)."""
    if not cfg.compile:
        return model
    import dropit

    return dropit.compile_budgeted(model, budget=cfg.compile_memory_budget)


def _setup_state(cfg: RunConfig, steps_per_epoch: int, progress: Progress, model: nn.Module,
                 opt: Optimization) -> TrainState:
    total = cfg.epochs * steps_per_epoch
    return TrainState(config=cfg, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch, step=progress.step,
                      metrics=progress.rows, model=model, lr=opt.optimizer.param_groups[0]["lr"],
                      total_steps=min(total, cfg.max_steps) if cfg.max_steps is not None else total,
                      start_epoch=progress.epoch, per_step=progress.per_step,
                      last_eval=results.last_evaluation(progress.rows), wall_before=progress.wall_s)


def _setup_cache_sample(val: Dataset, n: int, device: torch.device, memory_format: torch.memory_format) -> torch.Tensor:
    """The first ``n`` validation images, whose kept bytes the meter counts each epoch (rank 0)."""
    images = torch.stack([val[i][0] for i in range(n)])
    return images.to(device, memory_format=memory_format)


# What a resumed run may set otherwise than its checkpoint without a warning: run control, its length, and how
# the steps execute (compiled, channels-last)
RESUMABLE = RUN_CONTROL | {"epochs", "max_steps", "compile", "channels_last"}


def _changed_keys(saved: dict, now: dict) -> list[str]:
    """Parameters that change what is trained, set differently in the checkpoint's config."""
    return sorted(k for k in now if k not in RESUMABLE and k in saved and saved[k] != now[k])


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
