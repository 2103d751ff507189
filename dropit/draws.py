"""The random draws of the sampling strategies: reproducible, stateless, and the same eager and compiled.

    dropit.seed_draws(seed, step)    # before each training step (the kit's loop does it)

The ``"unbiased"`` strategy keeps a small element with a probability; its
uniform draw for element ``i`` of a tensor is a hash of (seed, step, i, the
element's own bits) (:func:`dropit.kernels.draw_mask`), not a call to a random
number generator:

- no RNG state: converting a model does not shift torch's global generator, so
  a DropIT run sees the same initial weights, batches and dropout masks as the
  plain run of the same seed (the claim study pairs arms by seed);
- the same on every backend (torch reference, C): one integer formula, which
  the kernels' tests compare bit for bit;
- the same under ``torch.compile``: the key is read when the record is made,
  inside the custom op, so a new step neither recompiles nor bakes in a constant;
- fresh at every step even without :func:`seed_draws`, since the data changes;
  two layers that cache the same tensor share one record and so one draw;
- under DDP, each rank draws for its own data (the kit's loop keys each rank
  with its own seed): independent draws whose average is still unbiased, and a
  rerun of the same ranks is bit-identical.
"""
from __future__ import annotations

from .kernels.reference import _mix31

_key = [0, 0]  # (seed, step)


def seed_draws(seed: int, step: int = 0) -> None:
    """Key the draws of the sampling strategies to a run's ``seed`` and its optimizer ``step``."""
    _key[0], _key[1] = int(seed), int(step)


def current_key() -> int:
    """One 31-bit integer from (seed, step): the per-step part of every draw."""
    return int(_mix31((_key[0] * 0x9E3779B1 + _key[1]) & 0x7FFFFFFF))
