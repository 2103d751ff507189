"""The random draws of the sampling strategies: reproducible, stateless, and the same eager and compiled.

    dropit.seed_draws(seed, step)    # before each training step (the kit's loop does it)

The ``"unbiased"`` strategy keeps a small element with a probability; its
uniform draw for element ``i`` of a tensor is a hash of (seed, step, i, the
element's own bits), not a call to a random number generator:

- no RNG state: converting a model does not shift torch's global generator, so
  a DropIT run sees the same initial weights, batches and dropout masks as the
  plain run of the same seed (the claim study pairs arms by seed);
- the same on every device and backend (torch reference, C, Triton): one
  integer formula, which the kernels' tests compare bit for bit;
- the same under ``torch.compile``: the key is read when the record is made,
  inside the custom op, so a new step neither recompiles nor bakes in a constant;
- fresh at every step even without :func:`seed_draws`, since the data changes;
  two layers that cache the same tensor share one record and so one draw;
- under DDP, each rank draws for its own data: independent draws whose average
  is still unbiased, and a rerun of the same ranks is bit-identical.
"""
from __future__ import annotations

import torch

_MASK31 = 0x7FFFFFFF
_key = [0, 0]  # (seed, step)


def seed_draws(seed: int, step: int = 0) -> None:
    """Key the draws of the sampling strategies to a run's ``seed`` and its optimizer ``step``."""
    _key[0], _key[1] = int(seed), int(step)


def current_key() -> int:
    """One 31-bit integer from (seed, step): the per-step part of every draw."""
    return mix31((_key[0] * 0x9E3779B1 + _key[1]) & _MASK31)


def mix31(v):
    """A 31-bit integer hash (int or int64 tensor): every product stays below 2^63."""
    v = ((v & _MASK31) * 0x5BD1E995 + 0x3C6EF372) & _MASK31
    v = v ^ (v >> 13)
    v = (v * 0x27D4EB2D) & _MASK31
    return v ^ (v >> 15)


def element_bits31(flat: torch.Tensor) -> torch.Tensor:
    """(n,) int64: 31 bits of each element's own bits (fp64 folded)."""
    size = flat.element_size()
    raw = flat.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[size]).long()
    if size == 8:
        raw = raw ^ (raw >> 32)
    return raw & _MASK31


def uniforms(flat: torch.Tensor, key: int) -> torch.Tensor:
    """(n,) float32 in [0, 1): element i's draw, hash(key, i, bits of flat[i]) / 2^31."""
    i = torch.arange(flat.numel(), dtype=torch.int64, device=flat.device)
    v = mix31(mix31(i ^ key) ^ element_bits31(flat))
    return v.float() * (1.0 / 2**31)
