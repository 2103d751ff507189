"""Where a run runs: rank, world size and device (torchrun or one process), and the record of it.

- :class:`Dist`         rank / world / device; initialises and closes the process group under torchrun
- :func:`startup_problems`  what stops a configuration from starting there (fp16 off CUDA, an indivisible batch)
- :func:`environment`   the ``environment`` block of metrics.json (versions, device, threads, ...)
- :func:`rss_bytes`, :func:`peak_rss_bytes`, :func:`reset_peak_rss`  this process's resident memory, now and
  at its peak: the lab's one way to measure it (the loop's CPU peak, the frontier, benchmarks/memory.py)
- :class:`PeakMemory`   the peak of a stretch of training: CUDA allocator's, or the CPU process's growth
- :func:`compile_counts`  graphs and graph breaks dynamo has counted in this process
"""
from __future__ import annotations

import os
import platform
import resource
import sys
from typing import Any

import torch
import torch.distributed as dist

from dropit.lab.train.config import ConfigError, RunConfig


class Dist:
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


def startup_problems(cfg: RunConfig, device: torch.device, world: int) -> list[str]:
    """What stops ``cfg`` from starting on ``world`` processes on ``device``: the Trainer raises the first,
    the dry run lists them all."""
    problems = []
    if cfg.amp == "fp16" and device.type != "cuda":
        problems.append("amp=fp16 needs CUDA; use amp=bf16 or amp=none on CPU")
    if cfg.batch_size % world:
        problems.append(f"batch_size {cfg.batch_size} is not divisible by the {world} processes")
    return problems


def rss_bytes() -> int:
    """This process's resident size now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def peak_rss_bytes() -> int:
    """This process's peak resident size since it started or since :func:`reset_peak_rss`.

    Linux's VmHWM, which ``reset_peak_rss`` can lower (getrusage's maxrss may
    keep an older peak); getrusage's maxrss where there is no /proc.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak_rss() -> bool:
    """Lower the peak resident size to the current one (Linux /proc/self/clear_refs); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """The memory peak of the work since :meth:`reset`, as (bytes, kind).

    On CUDA the allocator's ``max_memory_allocated`` ("cuda_max_allocated");
    on a CPU the growth of this process's peak resident size over its size when
    this object was made ("cpu_peak_rss_growth"; the peak is reset where Linux
    allows, else it covers everything since the process started).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.base = rss_bytes()

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            reset_peak_rss()

    def read(self) -> tuple[int, str]:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device), "cuda_max_allocated"
        return max(0, peak_rss_bytes() - self.base), "cpu_peak_rss_growth"


def compile_counts() -> dict[str, int]:
    """Graphs dynamo compiled and graph breaks it hit so far in this process (its counters)."""
    from torch._dynamo.utils import counters

    return {"graphs": int(counters["stats"]["unique_graphs"]), "graph_breaks": int(sum(counters["graph_break"].values()))}


def environment(d: Dist) -> dict[str, Any]:
    import torchvision

    import dropit

    return {
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
