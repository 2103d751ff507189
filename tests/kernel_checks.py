"""What the kernel tests share: a bit-for-bit comparison, and the inputs that make kernels stumble."""
from __future__ import annotations

import math

import torch

_INT = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.uint8) if t.is_floating_point() else t


def assert_same(ours, ref) -> None:
    """Equal tensors, pair by pair: dtype, shape, device and every bit (NaN payloads, -0.0)."""
    ours, ref = list(ours), list(ref)
    assert len(ours) == len(ref)
    for u, v in zip(ours, ref):
        assert u.dtype == v.dtype and u.shape == v.shape and u.device == v.device
        assert torch.equal(_bits(u), _bits(v))


def awkward_inputs(n: int, dtype: torch.dtype, device="cpu"):
    """(name, (n,) tensor): Gaussian, all-zero, constant, and ReLU output with NaN, +-Inf and -0.0.

    The special values lie spread over the tensor (first, last and between),
    and one NaN has its sign bit set, which a magnitude key must clear.
    """
    g = torch.Generator(device=device).manual_seed(n)
    yield "gaussian", torch.randn(n, generator=g, device=device).to(dtype)
    yield "zeros", torch.zeros(n, dtype=dtype, device=device)
    yield "constant", torch.full((n,), -1.5, dtype=dtype, device=device)
    x = torch.randn(n, generator=g, device=device).relu().to(dtype)
    specials = torch.tensor([math.nan, math.inf, -math.inf, -0.0], dtype=dtype, device=device)
    if n < 4:
        x[:] = specials[:n]
    else:
        x[torch.linspace(0, n - 1, 4, device=device).long()] = specials
    if n > 9:
        x[n // 2] = math.nan
        ints = x.view(_INT[x.element_size()])
        ints[n // 2] |= torch.iinfo(ints.dtype).min
    yield "relu-nan-inf", x
