"""The dry run of a preset: what each row needs and whether it can start here, before a run of days.

    python -m dropit.lab.reproduce --preset paper --dry-run
    make reproduce PRESET=paper DRY_RUN=1

For every table row of the preset (``params/<row id>[_quick].yaml``) it prints:

- the parameter file;
- the dataset and the pretrained weights the row needs, each present, absent but
  downloadable (its host answers a connection probe), or missing, with where it
  was looked for and how to supply it; weights that are present are loaded into
  the row's model, so a file that does not fit stops the row here too;
- the devices the row will use: torchrun over every CUDA device where there are
  several (as :func:`dropit.lab.reproduce.rows.run_rows` does), else one device;
- a rough time per epoch: training steps of the row's model, DropIT settings,
  optimizer and precision at its batch size per device, on random images (data
  loading not included, eager mode), times the steps of one epoch. A row whose
  step would take more than ``max_step_s`` here is not measured; the rate
  extrapolated from a step at batch 2 is printed instead.

Nothing is downloaded and no training starts. :func:`dry_run` returns 1 (the
exit status) if any row cannot start here, else 0.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
import torch.nn.functional as F

from dropit.lab import download as dl
from dropit.lab.data.datasets import NUM_CLASSES, TRAIN_IMAGES, DatasetMissing, ensure_dataset, resolve_data_dir
from dropit.lab.models.catalog import apply_dropit, build_model, default_image_size
from dropit.lab.models.weights import WeightsMissing, is_remote, remote, resolve_weights, weights_path
from dropit.lab.paper import TABLES
from dropit.lab.reproduce.rows import default_launcher, resolve, table_params
from dropit.lab.train.config import RunConfig, load_config
from dropit.lab.train.optim import build_optimizer
from dropit.lab.train.runtime import startup_problems

DOWNLOADABLE = {"cifar100": dl.CIFAR100, "imagenette": dl.IMAGENETTE}
PROBE_BATCH = 2
MAX_STEP_S = 20.0


@dataclass
class Need:
    """Something a row needs: where it is looked for, and whether the row will have it."""

    kind: str  # "data" | "weights"
    name: str  # the dataset, or the weights as the parameter file names them
    where: Path
    status: str
    ok: bool
    fix: str = ""  # for what is missing: the full message (where, and how to supply it)


@dataclass
class RowPlan:
    params: str
    needs: list[Need]
    devices: str
    epoch: str
    problems: list[str] = field(default_factory=list)  # what else stops the row here

    @property
    def can_start(self) -> bool:
        return not self.problems and all(n.ok for n in self.needs)


class Hosts:
    """Connection probes, one per host."""

    def __init__(self):
        self.seen: dict[str, bool] = {}

    def reachable(self, url: str) -> bool:
        host = urlparse(url).hostname or url
        if host not in self.seen:
            self.seen[host] = dl.reachable(url)
        return self.seen[host]


def _absent(kind: str, name: str, where: Path, fix: str, url: str | None, download: bool, hosts: Hosts) -> Need:
    if url is None:
        return Need(kind, name, where, "MISSING (never downloaded)", False, fix)
    if not download:
        return Need(kind, name, where, "MISSING (downloads are off)", False, fix)
    host = urlparse(url).hostname
    if hosts.reachable(url):
        return Need(kind, name, where, f"absent: downloaded from {host} before the rows run", True)
    return Need(kind, name, where, f"MISSING: {host} cannot be reached (offline?)", False, fix)


def data_need(cfg: RunConfig, download: bool, hosts: Hosts) -> Need:
    root = resolve_data_dir(cfg.data_dir).resolve()
    where = root / ("cifar-100-python" if cfg.dataset == "cifar100" else cfg.dataset)
    try:
        return Need("data", cfg.dataset, ensure_dataset(cfg.dataset, root, download=False), "present", True)
    except DatasetMissing as e:
        source = DOWNLOADABLE.get(cfg.dataset)
        return _absent("data", cfg.dataset, where, str(e), source.url() if source else None, download, hosts)


def weights_need(cfg: RunConfig, download: bool, hosts: Hosts) -> Need | None:
    if not cfg.pretrained:
        return None
    where = weights_path(cfg.pretrained, cfg.weights_dir)
    try:
        return Need("weights", cfg.pretrained, resolve_weights(cfg.pretrained, cache_dir=cfg.weights_dir,
                                                               download=False), "present", True)
    except WeightsMissing as e:
        url = remote(cfg.pretrained).url if is_remote(cfg.pretrained) else None
        return _absent("weights", cfg.pretrained, where, str(e), url, download, hosts)


def weights_fit(cfg: RunConfig, path: Path) -> str | None:
    """Why the weights file does not load into the row's model, or None if it does."""
    size = cfg.image_size or default_image_size(cfg.model, cfg.dataset)
    try:
        build_model(cfg.model, NUM_CLASSES[cfg.dataset], image_size=size, patch_size=cfg.patch_size, weights=path)
    except Exception as e:  # a truncated file, another architecture's keys: the row would stop at the same place
        return f"the weights at {path} do not load ({type(e).__name__}: {str(e).strip()[:300]})"
    return None


def placement(cfg: RunConfig) -> tuple[str, torch.device, int, list[str]]:
    """Where the row runs (text), the device to measure on, the batch per device, and what stops it here.

    The Trainer's own start-up checks (device, fp16, batch divisibility), made without starting it.
    """
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    problems = []
    if default_launcher() == "torchrun":
        world, device = n_cuda, torch.device("cuda:0")
        text = f"{n_cuda} x {torch.cuda.get_device_name(0)} (torchrun, one process per GPU)"
    else:
        want = cfg.device if cfg.device != "auto" else ("cuda" if n_cuda else "cpu")
        if want.startswith("cuda") and not n_cuda:
            problems.append(f"device={cfg.device} but CUDA is not available here")
            want = "cpu"
        world, device = 1, torch.device(want)
        text = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"
        text += "" if n_cuda else " (no CUDA device here)"
    problems += startup_problems(cfg, device, world)
    per_device = cfg.batch_size // world
    return f"{text}; batch {per_device} per device", device, per_device, problems


def step_seconds(cfg: RunConfig, device: torch.device, batch: int, *, steps: int = 2) -> float:
    """Median seconds of ``steps`` training steps after a warm-up one, on random images (data loading excluded)."""
    size = cfg.image_size or default_image_size(cfg.model, cfg.dataset)
    classes = NUM_CLASSES[cfg.dataset]
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = build_model(cfg.model, classes, image_size=size, patch_size=cfg.patch_size)
    model = apply_dropit(model, cfg).to(device, memory_format=fmt).train()
    optimizer = build_optimizer(cfg, model)
    images = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)  # (B, 3, H, W)
    targets = torch.randint(0, classes, (batch,), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(images), targets, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def epoch_time(cfg: RunConfig, device: torch.device, per_device: int, max_step_s: float) -> str:
    """``~N min/epoch (...)`` measured here, or ``not measured (...)`` with the reason."""
    steps = min(TRAIN_IMAGES[cfg.dataset], cfg.subset or math.inf) // cfg.batch_size
    try:
        probe = min(PROBE_BATCH, per_device)
        t = step_seconds(cfg, device, probe, steps=1)
        if probe < per_device:
            estimate = t * per_device / probe
            if estimate > max_step_s:
                return (f"not measured (too slow here: ~{estimate:.0f} s/step at batch {per_device}, extrapolated "
                        f"from batch {probe}: ~{duration(estimate * steps)}/epoch)")
            t = step_seconds(cfg, device, per_device)
    except torch.cuda.OutOfMemoryError:
        return f"not measured (out of memory at batch {per_device} on {device}: the row would fail too)"
    except Exception as e:  # the measurement is advisory: say why it is missing, do not stop the dry run
        return f"not measured ({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})"
    return f"~{duration(t * steps)}/epoch ({t:.2f} s/step x {steps} steps, measured here on random images)"


def plan_row(params: str, *, download: bool, hosts: Hosts, measure: bool, max_step_s: float) -> RowPlan:
    cfg = load_config(str(resolve(params)))
    needs = [n for n in (data_need(cfg, download, hosts), weights_need(cfg, download, hosts)) if n]
    devices, device, per_device, problems = placement(cfg)
    weights = next((n for n in needs if n.kind == "weights" and n.status == "present"), None)
    if weights and (why := weights_fit(cfg, weights.where)):
        problems.append(why)
    if problems:
        epoch = "not measured (the row cannot run here)"
    elif measure:
        epoch = epoch_time(cfg, device, per_device, max_step_s)
    else:
        epoch = "not measured (--no-measure)"
    if "out of memory" in epoch:
        problems.append(epoch.removeprefix("not measured (").rstrip(")"))
    return RowPlan(params, needs, devices, epoch, problems)


def show(i: int, n: int, plan: RowPlan, out: Callable[[str], None]) -> None:
    out(f"[{i}/{n}] {plan.params}")
    for need in plan.needs:
        out(f"    {need.kind:<8} {need.name} at {need.where}: {need.status}")
    if not any(need.kind == "weights" for need in plan.needs):
        out(f"    {'weights':<8} none (trained from scratch)")
    out(f"    {'devices':<8} {plan.devices}")
    out(f"    {'time':<8} {plan.epoch}")
    missing = [f"{n.kind} missing" for n in plan.needs if not n.ok] + plan.problems
    out(f"    -> {'can start' if plan.can_start else 'CANNOT START: ' + '; '.join(missing)}")


def dry_run(preset: str, *, download: bool = True, measure: bool = True, max_step_s: float = MAX_STEP_S,
            out: Callable[[str], None] = print) -> int:
    """Print every row's plan (see the module docstring); 1 if any row cannot start here, else 0."""
    files = [f for table in TABLES for f in table_params(table, preset)]
    out(f"dry run: preset {preset}, {len(files)} rows; nothing is downloaded or trained. Times: model compute on "
        f"random images at each row's batch size, rough (a busy machine reads slower).")
    hosts, plans = Hosts(), []
    for i, f in enumerate(files, 1):
        plans.append(plan_row(f, download=download, hosts=hosts, measure=measure, max_step_s=max_step_s))
        show(i, len(files), plans[-1], out)
    blocked = [p for p in plans if not p.can_start]
    fixes = {(n.kind, n.name): n.fix for p in plans for n in p.needs if not n.ok}
    if fixes:
        out("\nmissing, and how to supply it:")
        for (kind, name), fix in fixes.items():
            out(f"- {kind} {name}: {fix}")
    out(f"\ndry run: {len(plans) - len(blocked)} of {len(plans)} rows can start here"
        + (f"; cannot: {', '.join(Path(p.params).stem for p in blocked)}" if blocked else ""))
    return 1 if blocked else 0
