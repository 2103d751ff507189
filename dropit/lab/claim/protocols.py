"""The claim study's protocols (a recipe in params/claim_*.yaml) and their arms (what DropIT keeps).

    cfg = run_config("cnn", "mink", seed=1, out_dir="runs/x")   # the recipe + the arm + the seed

Every arm of a protocol trains the same recipe; seed k gives every arm the same
initial weights and the same batches and crops, so the arms differ only in
what their converted layers keep for backward. The converted layers are every
convolution and linear layer except the first convolution and the classifier
(the kit's default exclusion, as the paper ran it).

=========  ============  ===================================================
protocol   arm           DropIT
=========  ============  ===================================================
cnn        plain         none
cnn        mink          ``"mink"``, gamma 0.8 (the paper's CIFAR ResNet-18)
cnn        default       ``"sampled"``, gamma 0.9 (the kit's default)
cnn        default_int8  the default + ``quantize="int8"``
cnn        unbiased      ``"unbiased"``, gamma 0.912: mink gamma 0.9's memory
cnn        unbiased_m08  ``"unbiased"``, gamma 0.816: mink gamma 0.8's memory
vit        plain         none
vit        mink          ``"mink"``, gamma 0.9 (the paper's ViT-B/16)
vit        default_int8  ``"sampled"``, gamma 0.9 + ``quantize="int8"``
vit        unbiased      ``"unbiased"``, gamma 0.912: mink gamma 0.9's memory
gpu        plain         none (CIFAR ResNet-18, bf16, for one GPU)
gpu        mink          ``"mink"``, gamma 0.8
=========  ============  ===================================================

The ``"unbiased"`` arms run at equal memory, not equal gamma: the gamma at which
they keep no more bytes than ``"mink"`` at the gamma named
(:func:`dropit.lab.claim.mechanism.memory_matched_gamma` on the protocol's model
and batch; a test checks the constants). ``"rescaled"`` is not an arm: the
mechanism's pre-screen (docs/claim.md) measured its gradient farther from the
exact one than min-k's and unbiased's at every step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from dropit.lab.train.config import RunConfig, load_config

PARAMS = Path(__file__).resolve().parents[3] / "params"
_DEFAULT = {"dropit": True, "dropit_strategy": "sampled", "dropit_gamma": 0.9}
ARMS: dict[str, dict[str, dict]] = {
    "cnn": {
        "plain": {},
        "mink": {"dropit": True, "dropit_strategy": "mink", "dropit_gamma": 0.8},
        "default": dict(_DEFAULT),
        "default_int8": {**_DEFAULT, "dropit_quantize": "int8"},
        "unbiased": {"dropit": True, "dropit_strategy": "unbiased", "dropit_gamma": 0.912},
        "unbiased_m08": {"dropit": True, "dropit_strategy": "unbiased", "dropit_gamma": 0.816},
    },
    "vit": {
        "plain": {},
        "mink": {"dropit": True, "dropit_strategy": "mink", "dropit_gamma": 0.9},
        "default_int8": {**_DEFAULT, "dropit_quantize": "int8"},
        "unbiased": {"dropit": True, "dropit_strategy": "unbiased", "dropit_gamma": 0.912},
    },
    "gpu": {  # the paper's CIFAR ResNet-18 at a short schedule, for one GPU (params/claim_gpu.yaml)
        "plain": {},
        "mink": {"dropit": True, "dropit_strategy": "mink", "dropit_gamma": 0.8},
    },
}
PROTOCOLS = tuple(ARMS)
CPU_PROTOCOLS = ("cnn", "vit")  # what --protocol all (make claim) runs
MEMORY_OF = {"unbiased": 0.9, "unbiased_m08": 0.8}  # the mink gamma whose bytes an arm keeps


def params_file(protocol: str) -> Path:
    """``params/claim_<protocol>.yaml``: the protocol's recipe."""
    check(protocol)
    return PARAMS / f"claim_{protocol}.yaml"


def check(protocol: str, arms: Iterable[str] = ()) -> None:
    """ValueError naming the valid choices for an unknown protocol or arm."""
    if protocol not in ARMS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    bad = [a for a in arms if a not in ARMS[protocol]]
    if bad:
        raise ValueError(f"unknown arm(s) {', '.join(bad)} of protocol {protocol!r}; choose among {', '.join(ARMS[protocol])}")


def run_config(protocol: str, arm: str, *, seed: int, out_dir: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """The recipe of ``protocol`` with ``arm``'s DropIT settings, ``seed`` and ``out_dir``; ``overrides`` (key=value) last."""
    check(protocol, [arm])
    fixed = [f"{k}={v}" for k, v in ARMS[protocol][arm].items()]
    label = f"claim {protocol} {arm} seed {seed}"
    return load_config(params_file(protocol), [*fixed, f"seed={seed}", f"out_dir={out_dir}", "resume=true",
                                               f"label={label}", *overrides])
