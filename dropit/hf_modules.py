"""Hugging Face's own GELU, SiLU and RMSNorm classes, recognised without importing transformers.

transformers computes these in classes of its own (``NewGELUActivation`` in
GPT-2, ``SiLUActivation`` and ``LlamaRMSNorm`` in LLaMA and its relatives),
not in torch's ``nn.GELU``, ``nn.SiLU`` or ``nn.RMSNorm``, so without this the
lossy companions (``to_dropit(..., quantize=)``) would leave them dense. A
module is recognised by its class name and attributes and then confirmed by
what it computes: at conversion its own forward runs on a small probe and must
match the function that the companion's backward differentiates (tanh or erf
GELU, SiLU, RMSNorm with the module's epsilon). A module that computes
something else is left alone, so a look-alike never gets a wrong gradient.
Converted modules still run their own forward, so outputs stay bit for bit.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# class name -> the function its forward computes (as named by dropit.activations)
ACTIVATIONS = {
    "NewGELUActivation": "gelu_tanh",  # GPT-2's, written out in elementwise ops
    "FastGELUActivation": "gelu_tanh",
    "GELUTanh": "gelu_tanh",
    "PytorchGELUTanh": "gelu_tanh",
    "GELUActivation": "gelu_none",
    "SiLUActivation": "silu",
}


def _reference(function: str, x: torch.Tensor) -> torch.Tensor:
    if function == "silu":
        return F.silu(x)
    return F.gelu(x, approximate=function.removeprefix("gelu_"))


def activation_function(module: nn.Module) -> str | None:
    """``"gelu_tanh"``, ``"gelu_none"`` or ``"silu"`` for a recognised HF activation, else None."""
    function = ACTIVATIONS.get(type(module).__name__)
    if function is None or any(True for _ in module.parameters()):
        return None
    probe = torch.linspace(-8.0, 8.0, 161, dtype=torch.float64)
    try:
        with torch.no_grad():
            got = type(module).forward(module, probe)
    except Exception:  # not the forward we know: leave it alone
        return None
    if not isinstance(got, torch.Tensor) or got.shape != probe.shape:
        return None
    return function if torch.allclose(got, _reference(function, probe), rtol=1e-6, atol=1e-9) else None


def hf_function(module: nn.Module) -> str:
    """The function of a module :func:`activation_function` recognised (no probe)."""
    return ACTIVATIONS[type(module).__name__]


def is_rmsnorm(module: nn.Module) -> bool:
    """Whether ``module`` is an HF RMSNorm over its last dimension: ``weight * x / rms(x)``.

    LLaMA's and its relatives' (``LlamaRMSNorm``, ``MistralRMSNorm``, ...): a
    class name ending in ``RMSNorm``, a 1-d ``weight`` and a float
    ``variance_epsilon``. Variants that scale by ``1 + weight`` (Gemma) fail
    the probe. On the meta device (size estimates) only the structure is checked.
    """
    weight, eps = getattr(module, "weight", None), getattr(module, "variance_epsilon", None)
    if not type(module).__name__.endswith("RMSNorm") or not isinstance(weight, torch.Tensor) or weight.dim() != 1:
        return False
    if not isinstance(eps, float) or isinstance(module, getattr(nn, "RMSNorm", ())):
        return False
    if weight.is_meta:
        return True
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(3, weight.shape[0], generator=generator, dtype=torch.float64).to(weight.device)
    try:
        with torch.no_grad():
            got = type(module).forward(module, probe.to(weight.dtype))
    except Exception:
        return False
    if not isinstance(got, torch.Tensor) or got.shape != probe.shape:
        return False
    w = weight.detach().double()
    want = w * probe * (probe.square().mean(-1, keepdim=True) + eps).rsqrt()
    tol = 1e-5 if weight.dtype in (torch.float32, torch.float64) else 2e-2
    return torch.allclose(got.double(), want, rtol=tol, atol=tol * float(w.abs().max().clamp_min(1.0)))
