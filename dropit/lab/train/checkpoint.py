"""Checkpoints, and the RNG state that makes resume exact.

A checkpoint is written atomically by :func:`dropit.lab.io.write_bytes`: a
resumed run after a crash sees the old checkpoint or the new one, never half
of one.

A checkpoint holds the model, optimizer, scheduler and (optional) AMP scaler
states, the next epoch and step, the metrics so far, and the RNG states of
torch (CPU and CUDA), Python and NumPy of every rank, so that a resumed run
draws the same random numbers as an uninterrupted one.
"""
from __future__ import annotations

import io
import os
import random
from typing import Any

import numpy as np
import torch

from dropit.lab.io import write_bytes


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """``torch.save(state)`` to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(path, buf.getvalue())


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
