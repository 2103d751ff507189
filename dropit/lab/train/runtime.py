"""Where a run runs: rank, world size and device (torchrun or one process), and the record of it.

- :class:`Dist`         rank / world / device; initialises and closes the process group under torchrun
- :func:`environment`   the ``environment`` block of metrics.json (versions, device, threads, ...)
- :func:`rss_bytes`, :func:`peak_rss_bytes`  this process's resident memory (the CPU peak metric)
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


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


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
