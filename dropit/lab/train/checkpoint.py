"""Atomic writes, checkpoints, and the RNG state that makes resume exact.

Every file is written to a temporary file in the destination folder, flushed
and fsync'ed, then moved over the destination with ``os.replace``: a reader
(or a resumed run after a crash) sees the old file or the new one, never half
of one.

A checkpoint holds the model, optimizer, scheduler and (optional) AMP scaler
states, the next epoch and step, the metrics so far, and the RNG states of
torch (CPU and CUDA), Python and NumPy of every rank, so that a resumed run
draws the same random numbers as an uninterrupted one.
"""
from __future__ import annotations

import io
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """``torch.save(state)`` to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """A checkpoint written by :func:`save_checkpoint` (it holds RNG states and plain data)."""
    return torch.load(path, map_location=map_location, weights_only=False)


def rng_state() -> dict:
    """The RNG states of torch (CPU and every CUDA device), Python and NumPy of this process."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python and NumPy."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
