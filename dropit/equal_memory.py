"""Compare strategies at equal memory, not equal gamma: the gamma at which a strategy keeps a given number of bytes.

    target = kept_bytes(model, (32, 3, 32, 32), strategy="mink", gamma=0.9)
    gamma = gamma_for_bytes(model, (32, 3, 32, 32), "unbiased", target)   # about 0.91

Strategies whose kept count depends on the data reserve room above the expected
count (their *capacity*, see :mod:`dropit.strategies`), so at one gamma they
keep more bytes than exact min-k. Both functions run on the meta device
(:func:`dropit.estimate_cache`): nothing is computed, the model is untouched.
The bytes are everything the model keeps for backward at the given input
shape, converted with :func:`dropit.to_dropit`'s options (``**options``: the
module filter, ``relu_mask``, ``quantize``, ...) at each gamma.
"""
from __future__ import annotations

import copy
import torch.nn as nn

from .convert import converted_modules, restore, to_dropit
from .meter import estimate_cache
from .strategies import check_gamma, get_strategy


def kept_bytes(model: nn.Module, input_shape, strategy: str, gamma: float, **options) -> int:
    """Bytes ``model`` keeps for backward, converted at ``gamma``, for one input of ``input_shape``."""
    get_strategy(strategy)
    check_gamma(gamma)
    meta = copy.deepcopy(model).to("meta")
    if next(converted_modules(meta), None) is not None:
        restore(meta)
    to_dropit(meta, strategy, gamma, **options)
    return estimate_cache(meta, input_shape).total_bytes


def gamma_for_bytes(model: nn.Module, input_shape, strategy: str, target_bytes: int, *, tol: float = 1e-4,
                    **options) -> float:
    """The smallest gamma (to ``tol``) at which ``strategy`` keeps at most ``target_bytes``.

    Raises ValueError saying what it reached when even gamma just below 1 keeps more.
    """
    def bytes_at(g: float) -> int:
        return kept_bytes(model, input_shape, strategy, g, **options)

    hi = 1.0 - tol
    reached = bytes_at(hi)
    if reached > target_bytes:
        raise ValueError(f"strategy {strategy!r} keeps {reached} bytes even at gamma {hi:g}, more than the target "
                         f"{target_bytes}: choose a larger target or another strategy")
    lo = 0.0
    if bytes_at(lo) <= target_bytes:
        return lo
    while hi - lo > tol:  # bytes fall as gamma rises
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if bytes_at(mid) <= target_bytes else (mid, hi)
    return round(hi, 6)
