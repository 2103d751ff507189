"""Train and evaluate one run; the command line of the experiment layer.

    python -m dropit.lab.train params/smoke.yaml out_dir=runs/smoke epochs=2
    torchrun --standalone --nproc_per_node=2 -m dropit.lab.train params/smoke.yaml

or from Python (a notebook)::

    from dropit.lab.train import run
    metrics = run("params/smoke.yaml", callbacks=[my_live_plot])

Each run writes ``<out_dir>/metrics.json`` (after every epoch, atomically)::

    {"config": {...}, "status": "done" | "stopped" | "running",
     "epochs": [{"epoch", "train_loss", "train_top1", "val_top1", "val_top5",
                 "cache_bytes", "peak_bytes", "images_per_s", "epoch_s", ...}, ...],
     "final": {"top1", "top5", "cache_bytes", "peak_bytes", "images_per_s",
               "train_loss", "wall_s", ...},
     "environment": {"torch", "device", "world_size", ...}}

with accuracies in percent, and ``<out_dir>/checkpoint.pt`` after every epoch;
``resume=true`` continues from it and ends where an uninterrupted run would.

Callbacks are objects with any of ``on_step(state)``, ``on_epoch(state)`` and
``on_end(state)``; ``state`` is a :class:`TrainState`. Setting ``state.stop =
True`` ends training cleanly after the current step (the model is evaluated,
metrics written, the last full epoch's checkpoint kept). Under DDP callbacks run
on rank 0 and the stop flag is shared with all ranks.
"""
from __future__ import annotations

import bisect
import contextlib
import math
import os
import platform
import resource
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

from . import checkpoint as ckpt
from .config import ConfigError, RunConfig, as_config, load_config
from .data import DatasetMissing, build_datasets
from .metrics import Meter, all_reduce_max, topk_correct
from .models import apply_dropit, build_model


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


# ---------------------------------------------------------------- setup helpers


class _Dist:
    """Rank, world size and device; initialises the process group under torchrun."""

    def __init__(self, cfg: RunConfig):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        want = cfg.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device={cfg.device!r} but CUDA is not available here")
        if want == "cuda":
            want = f"cuda:{local}" if self.world > 1 else "cuda"
        self.device = torch.device(want)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.owned = False
        self.backend = None
        if self.world > 1:
            self.backend = "nccl" if self.device.type == "cuda" else "gloo"
            if not dist.is_initialized():
                dist.init_process_group(self.backend)
                self.owned = True
            self.rank, self.world = dist.get_rank(), dist.get_world_size()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()


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
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)


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


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


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


def environment(d: _Dist) -> dict[str, Any]:
    import torchvision

    import dropit

    env = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "dropit": getattr(dropit, "__version__", None),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(d.device),
        "device_name": torch.cuda.get_device_name(d.device) if d.device.type == "cuda" else platform.processor() or "cpu",
        "world_size": d.world,
        "backend": d.backend,
        "threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if d.device.type == "cuda" else None,
    }
    return env


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
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, autocast) -> dict[str, float]:
    """Loss and top-1/top-5 (percent) on this rank's shard, summed over all ranks."""
    was = model.training
    model.eval()
    meter = Meter()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
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
    d = _Dist(cfg)
    try:
        return _run(cfg, d, callbacks)
    finally:
        d.close()


def _run(cfg: RunConfig, d: _Dist, callbacks: list) -> dict:
    t_start = time.perf_counter()
    if cfg.amp == "fp16" and d.device.type != "cuda":
        raise ConfigError("amp='fp16' needs CUDA; use amp=bf16 or amp=none on CPU")
    if cfg.batch_size % d.world:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {d.world} processes")
    out_dir = Path(cfg.out_dir)
    log = _Log(d.main, cfg.log_every)
    ckpt.seed_everything(cfg.seed + d.rank)

    # data
    train_ds, val_ds, num_classes = build_datasets(cfg)
    per_rank = cfg.batch_size // d.world
    sampler = DistributedSampler(train_ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed, drop_last=False)
    gen = torch.Generator()
    pin = d.device.type == "cuda"
    train_loader = DataLoader(
        train_ds, batch_size=per_rank, sampler=sampler, num_workers=cfg.num_workers, drop_last=True,
        generator=gen, pin_memory=pin, persistent_workers=False,
    )
    val_shard = Subset(val_ds, list(range(d.rank, len(val_ds), d.world)))  # exact: no padding duplicates
    val_loader = DataLoader(val_shard, batch_size=(cfg.eval_batch_size or cfg.batch_size) // d.world or 1,
                            shuffle=False, num_workers=cfg.num_workers, pin_memory=pin)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {len(train_ds)} training images (subset?)")

    # model, DropIT, optimisation
    image_size = cfg.image_size or (32 if cfg.dataset == "cifar100" else 224)
    model = build_model(cfg.model, num_classes, image_size=image_size, weights=cfg.pretrained, patch_size=cfg.patch_size)
    model = apply_dropit(model, cfg).to(d.device)
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, Schedule(cfg, steps_per_epoch))
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    autocast = (lambda: torch.autocast(d.device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    # resume
    start_epoch, step, history, wall_before = 0, 0, [], 0.0
    ckpt_path = out_dir / "checkpoint.pt"
    resumed_rng = None
    if cfg.resume and ckpt_path.is_file():
        saved = ckpt.load_checkpoint(ckpt_path, map_location="cpu")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        start_epoch, step, history = saved["epoch"], saved["step"], saved["metrics"]
        changed = _changed_keys(saved.get("config", {}), cfg.to_dict())
        if changed:
            log.line(f"warning: resuming with parameters that differ from the checkpoint's: {', '.join(changed)}")
        wall_before = saved.get("wall_s", 0.0)
        rngs = saved.get("rng", [])
        if len(rngs) == d.world:
            resumed_rng = rngs[d.rank]
        else:
            log.line(f"checkpoint has RNG states of {len(rngs)} processes, this run has {d.world}: reseeding")
        log.line(f"resumed from {ckpt_path} at epoch {start_epoch} (step {step})")
    elif cfg.resume:
        log.line(f"resume=true but no checkpoint at {ckpt_path}: starting from scratch")

    raw_model = model
    if d.world > 1:
        ids = [d.device.index] if d.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    cache_n = min(cfg.cache_batch or min(cfg.batch_size, 128), len(val_ds))
    cache_sample = torch.stack([val_ds[i][0] for i in range(cache_n)]).to(d.device) if d.main else None

    env = environment(d)
    result: dict[str, Any] = {"config": cfg.to_dict(), "status": "running", "epochs": history, "final": None, "environment": env}
    state = TrainState(config=cfg, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch, step=step,
                       metrics=history, model=raw_model, lr=optimizer.param_groups[0]["lr"])
    if d.main:
        import dropit

        n_drop = sum(1 for _, _, f in dropit.converted_modules(raw_model) if f.kind != "relu")
        log.line(f"{cfg.label or cfg.model}: {cfg.model} on {cfg.dataset} ({len(train_ds)} train / {len(val_ds)} val images), "
                 f"{cfg.epochs} epochs x {steps_per_epoch} steps, batch {cfg.batch_size} on {d.world} x {d.device}, "
                 + (f"DropIT gamma={cfg.dropit_gamma} {cfg.dropit_strategy} ({n_drop} modules converted)" if cfg.dropit else "no DropIT"))

    if resumed_rng is not None:
        ckpt.set_rng_state(resumed_rng)
    rss0 = _rss_bytes()
    stopped = False
    train_time_total = sum(e.get("train_s", 0.0) for e in history)
    images_total = sum(e.get("train_images", 0) for e in history)
    t_session = time.perf_counter()
    last_eval: dict[str, float] = next((e for e in reversed(history) if e.get("val_top1") is not None), {})

    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
        state.epoch = epoch
        sampler.set_epoch(epoch)
        gen.manual_seed(cfg.seed * 100_003 + epoch * 1_009 + d.rank)  # worker seeds: a function of the epoch
        if d.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(d.device)
        model.train()
        meter = Meter()
        log.start_epoch(epoch, cfg.epochs, steps_per_epoch)
        t0 = time.perf_counter()
        for i, (images, targets) in enumerate(train_loader):
            images, targets = images.to(d.device, non_blocking=True), targets.to(d.device, non_blocking=True)
            with autocast():
                logits = model(images)
                loss = loss_fn(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
            scheduler.step()
            step += 1
            n = len(targets)
            c1, c5 = topk_correct(logits.detach().float(), targets)
            state.loss = loss.item()
            meter.update(n, loss=state.loss * n, top1=c1, top5=c5)
            state.step, state.lr, state.images = step, optimizer.param_groups[0]["lr"], meter.n * d.world
            if d.main:
                _emit(callbacks, "on_step", state)
            log.step(state, i, steps_per_epoch)
            if d.world > 1:
                state.stop = bool(all_reduce_max(float(state.stop), d.device))
            if state.stop or (cfg.max_steps is not None and step >= cfg.max_steps):
                break
        if d.device.type == "cuda":
            torch.cuda.synchronize(d.device)
        train_s = time.perf_counter() - t0
        log.end_epoch()
        stopped = state.stop
        partial = i + 1 < steps_per_epoch

        # memory of the training part of the epoch, max over ranks
        if d.device.type == "cuda":
            peak, peak_kind = torch.cuda.max_memory_allocated(d.device), "cuda_max_allocated"
        else:
            peak, peak_kind = max(0, _peak_rss_bytes() - rss0), "cpu_peak_rss_growth"
        peak = int(all_reduce_max(peak, d.device))
        meter.all_reduce(d.device)
        train_s_max = all_reduce_max(train_s, d.device)

        last_one = epoch + 1 == cfg.epochs or stopped or partial or (cfg.max_steps is not None and step >= cfg.max_steps)
        do_eval = (epoch + 1) % cfg.eval_every == 0 or last_one
        if do_eval:
            last_eval = evaluate(raw_model, val_loader, d.device, autocast)
        cache_bytes, cache_peak = measure_cache_bytes(raw_model, cache_sample) if d.main else (None, None)

        train_time_total += train_s_max
        images_total += meter.n
        row = {
            "epoch": epoch + 1,
            "steps": step,
            "lr": state.lr,
            "train_loss": meter.mean("loss"),
            "train_top1": meter.percent("top1"),
            "train_top5": meter.percent("top5"),
            "val_loss": last_eval.get("val_loss") if do_eval else None,
            "val_top1": last_eval.get("val_top1") if do_eval else None,
            "val_top5": last_eval.get("val_top5") if do_eval else None,
            "cache_bytes": cache_bytes,
            "cache_peak_cuda_bytes": cache_peak,
            "cache_batch": cache_n,
            "peak_bytes": peak,
            "peak_kind": peak_kind,
            "train_images": meter.n,
            "images_per_s": meter.n / train_s_max if train_s_max > 0 else None,
            "train_s": train_s_max,
            "wall_s": wall_before + time.perf_counter() - t_session,
            "partial": partial,
        }
        history.append(row)
        state.metrics = history
        if d.main:
            vt = "" if row["val_top1"] is None else f" val top1 {row['val_top1']:.2f} top5 {row['val_top5']:.2f}"
            cache = "" if cache_bytes is None else f" cache {cache_bytes / 2**20:.1f} MiB"
            log.line(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} top1 {row['train_top1']:.2f}{vt}"
                     f"{cache} peak {peak / 2**20:.0f} MiB {row['images_per_s'] or 0:.0f} img/s {row['train_s']:.1f}s")

        # checkpoint only whole epochs, so that resume repeats an interrupted one from its start
        if cfg.checkpoint and not partial:
            rngs = [None] * d.world
            if d.world > 1:
                dist.all_gather_object(rngs, ckpt.rng_state())
            else:
                rngs = [ckpt.rng_state()]
            if d.main:
                ckpt.save_checkpoint(ckpt_path, {
                    "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                    "epoch": epoch + 1, "step": step, "metrics": history, "rng": rngs,
                    "wall_s": row["wall_s"], "config": cfg.to_dict(),
                })
        result["final"] = _final(history, last_eval, train_time_total, images_total, wall_before + time.perf_counter() - t_session,
                                 len(train_ds), step, stopped)
        if d.main:
            ckpt.atomic_write_json(out_dir / "metrics.json", result)
            _emit(callbacks, "on_epoch", state)
        if d.world > 1:
            state.stop = bool(all_reduce_max(float(state.stop), d.device))
        if state.stop:
            stopped = True
            break

    if result["final"] is None:  # nothing left to train (resumed a finished run, or max_steps reached)
        result["final"] = _final(history, last_eval, train_time_total, images_total, wall_before, len(train_ds), step, stopped)
    result["final"]["startup_s"] = t_session - t_start
    result["status"] = "stopped" if stopped else "done"
    state.final = result["final"]
    if d.main:
        ckpt.atomic_write_json(out_dir / "metrics.json", result)
        log.line(f"wrote {out_dir / 'metrics.json'}: top1 {_fmt(result['final']['top1'])} top5 {_fmt(result['final']['top5'])}")
        _emit(callbacks, "on_end", state)
    return result


_RUN_CONTROL = {"resume", "out_dir", "label", "epochs", "max_steps", "log_every", "num_workers", "threads",
                "device", "checkpoint", "eval_every", "data_dir", "download", "paper_row", "eval_batch_size"}


def _changed_keys(saved: dict, now: dict) -> list[str]:
    return sorted(k for k in now if k not in _RUN_CONTROL and k in saved and saved[k] != now[k])


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
