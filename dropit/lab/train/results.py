"""``<out_dir>/metrics.json``: what one run records, and the one place its layout is written down.

    {"config":      RunConfig as a dict,
     "config_sources": {"chain": [file, its base, ...], "keys": {key: file or "the command line"}}
                    which parameter file set which key (null when the config was not read from files),
     "status":      "running" (after each epoch) | "done" | "stopped",
     "epochs":      [epoch_row, ...]        one per epoch trained, resumed ones included,
     "per_step":    [step_row, ...]         every ``record_every`` steps (none when 0),
     "final":       final_block,
     "environment": runtime.environment() plus "compile" and "channels_last"}

Accuracies are percents, memory in bytes, times in seconds. ``cache_bytes`` is
the memory meter's count of one extra training-mode forward of
``cache_batch`` validation images; ``kept_bytes`` / ``step_kept_bytes`` what a
step's own forward kept for backward (:mod:`dropit.lab.train.step_memory`);
``peak_bytes`` the training pass's peak (``peak_kind`` says which: CUDA
allocator, or growth of the CPU process's peak resident size).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dropit.lab.train.metrics import Meter


@dataclass
class EpochStats:
    """What one pass over the training data measured, reduced over ranks."""

    meter: Meter  # loss / top-1 / top-5 sums and the image count
    train_s: float  # the slowest rank's training time
    partial: bool  # ended before its last step (stop flag or max_steps)
    peak: int  # memory peak of the pass, max over ranks
    peak_kind: str  # "cuda_max_allocated" or "cpu_peak_rss_growth"
    step_kept_bytes: int | None  # mean over the epoch's steps of what each forward kept for backward


def step_row(state) -> dict[str, Any]:
    """One entry of ``per_step``, from the loop's :class:`~dropit.lab.train.loop.TrainState` after a step."""
    return {"step": state.step, "epoch": state.epoch + 1, "loss": state.loss, "train_top1": state.train_top1,
            "kept_bytes": state.kept_bytes, "lr": state.lr, "step_s": state.step_s}


def epoch_row(state, stats: EpochStats, evaluated: dict | None, cache: tuple, *, wall_s: float) -> dict[str, Any]:
    """One entry of ``epochs``; ``evaluated`` is this epoch's validation (None: not evaluated),
    ``cache`` is (cache_bytes, its CUDA peak or None, cache_batch)."""
    meter, ev = stats.meter, evaluated or {}
    cache_bytes, cache_peak, cache_batch = cache
    return {
        "epoch": state.epoch + 1,
        "steps": state.step,
        "lr": state.lr,
        "train_loss": meter.mean("loss"),
        "train_top1": meter.percent("top1"),
        "train_top5": meter.percent("top5"),
        "val_loss": ev.get("val_loss"),
        "val_top1": ev.get("val_top1"),
        "val_top5": ev.get("val_top5"),
        "cache_bytes": cache_bytes,
        "cache_peak_cuda_bytes": cache_peak,
        "cache_batch": cache_batch,
        "step_kept_bytes": stats.step_kept_bytes,
        "peak_bytes": stats.peak,
        "peak_kind": stats.peak_kind,
        "train_images": meter.n,
        "images_per_s": meter.n / stats.train_s if stats.train_s > 0 else None,
        "train_s": stats.train_s,
        "wall_s": wall_s,
        "partial": stats.partial,
    }


def final_block(rows: list[dict], last_eval: dict, *, wall_s: float, train_images: int, steps: int,
                stopped: bool, step_times: list[float], compile_counts: dict | None) -> dict[str, Any]:
    """``final``: the last validation, the last epoch's training figures, and the run's totals.

    ``images_per_s`` is over all epochs (resumed ones included); ``step_s_median``
    over this process's steps; ``compile`` (compiled runs only) the graphs and
    graph breaks dynamo counted in this run.
    """
    last = rows[-1] if rows else {}
    caches = [e["cache_bytes"] for e in rows if e.get("cache_bytes") is not None]
    peaks = [e["peak_bytes"] for e in rows if e.get("peak_bytes") is not None]
    train_time, images = sum(e.get("train_s", 0.0) for e in rows), sum(e.get("train_images", 0) for e in rows)
    times = sorted(step_times)
    final = {
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
        "epochs_completed": sum(1 for e in rows if not e.get("partial")),
        "steps": steps,
        "train_images": train_images,
        "stopped": stopped,
        "step_s_median": times[len(times) // 2] if times else None,
    }
    if compile_counts is not None:
        final["compile"] = compile_counts
    return final


def last_evaluation(rows: list[dict]) -> dict:
    """The validation figures of the last evaluated epoch (a resumed run's starting point)."""
    return next((e for e in reversed(rows) if e.get("val_top1") is not None), {})


def metrics_json(*, config: dict, status: str, rows: list[dict], per_step: list[dict], final: dict | None,
                 environment: dict, config_sources: dict | None = None) -> dict[str, Any]:
    """The whole of metrics.json, in its key order."""
    return {"config": config, "config_sources": config_sources, "status": status, "epochs": rows,
            "per_step": per_step, "final": final, "environment": environment}
