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
cnn_ft     (cnn's arms)  fine-tuning: classes 50-99 from a source trained on 0-49
vit_ft     (vit's arms)  the same for the ViT
cnn_e4 ..  plain, mink   the cnn recipe at 4, 8 or 32 epochs (cnn_e4, cnn_e8,
                         cnn_e32; vit_e26: the vit's at 26), warm-up scaled
=========  ============  ===================================================

The fine-tuning protocols (``params/claim_<model>_ft.yaml``) start every arm
and seed from one source checkpoint per model, made by the study when missing
(:mod:`dropit.lab.claim.source`), as a pretrained model would be; the seed
changes the fresh classifier's initialisation and the batch order.

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
FINETUNE = {"cnn_ft": "cnn", "vit_ft": "vit"}  # fine-tuning protocol -> the protocol whose arms it runs
SCHEDULES = {"cnn_e4": ("cnn", 4), "cnn_e8": ("cnn", 8), "cnn_e32": ("cnn", 32), "vit_e26": ("vit", 26)}
ARMS.update({name: dict(ARMS[base]) for name, base in FINETUNE.items()})
ARMS.update({name: {arm: ARMS[base][arm] for arm in ("plain", "mink")} for name, (base, _) in SCHEDULES.items()})
PROTOCOLS = tuple(ARMS)
CPU_PROTOCOLS = ("cnn", "vit")  # what --protocol all (make claim) runs
MEMORY_OF = {"unbiased": 0.9, "unbiased_m08": 0.8}  # the mink gamma whose bytes an arm keeps


def params_file(protocol: str) -> Path:
    """``params/claim_<protocol>.yaml``: the protocol's recipe (a schedule protocol's: its base protocol's)."""
    check(protocol)
    return PARAMS / f"claim_{SCHEDULES[protocol][0] if protocol in SCHEDULES else protocol}.yaml"


def schedule_overrides(protocol: str) -> list[str]:
    """A schedule protocol's epochs, with the warm-up scaled by the same factor (the cosine follows the epochs)."""
    if protocol not in SCHEDULES:
        return []
    base, epochs = SCHEDULES[protocol]
    recipe = load_config(params_file(base))
    return [f"epochs={epochs}", f"warmup_epochs={recipe.warmup_epochs * epochs / recipe.epochs:g}"]


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
    fixed = schedule_overrides(protocol) + [f"{k}={v}" for k, v in ARMS[protocol][arm].items()]
    label = f"claim {protocol} {arm} seed {seed}"
    return load_config(params_file(protocol), [*fixed, f"seed={seed}", f"out_dir={out_dir}", "resume=true",
                                               f"label={label}", *overrides])
