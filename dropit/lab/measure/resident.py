"""Resident growth and saved bytes of one training-mode forward, plain against DropIT, each in a fresh process.

    row = forward_row("resnet18-cifar", "dropit", gamma=0.9)        # benchmarks/memory.py's rows
    row = zoo_row("gpt2", "quantize=int8", gamma=0.9)               # benchmarks/models.py's rows

Two quantities, two names: the **resident growth** (``growth_bytes``) is how
much the process's resident memory grows over one training-mode forward with
its output, and so its graph and everything saved for backward, still alive;
the **saved bytes** (``meter_bytes``) are what the memory meter counts as
saved for backward over the same forward (each storage once, parameters
excluded). Each row is its own process (:mod:`dropit.lab.measure.process`).

The catalog's models (:data:`MODELS`, the frontier's sizes) are converted by
:func:`variants`, the zoo's (:mod:`dropit.lab.models.zoo`, its ``"bench"``
size, loss included) by :func:`zoo_variant`.
"""
from __future__ import annotations

import gc

import torch

import dropit
from dropit.candidate import Candidate

from dropit.lab.measure.frontier import MODELS
from dropit.lab.measure.process import in_fresh_process
from dropit.lab.train.runtime import rss_bytes


def variants(gamma: float, strategy: str = dropit.DEFAULT_STRATEGY) -> dict[str, Candidate]:
    """``benchmarks/memory.py``'s rows: plain, ``to_dropit`` with its defaults, + int8 / int4 (lossy), and the
    published way (no ReLU or MaxPool companion)."""
    return {
        "plain": Candidate(label="plain"),
        "dropit": Candidate(gamma, strategy=strategy, label="dropit"),
        "+int8": Candidate(gamma, "int8", strategy=strategy, label="+int8"),  # norms, activations, attention too
        "+int4": Candidate(gamma, "int4", strategy=strategy, label="+int4"),
        "published": Candidate(gamma, strategy=strategy, label="published",
                               options=(("relu_mask", False), ("compact_maxpool", False))),
    }


def zoo_variant(variant: str, gamma: float) -> Candidate:
    """``benchmarks/models.py``'s rows: ``"plain"``, ``"dropit"`` (``to_dropit``'s defaults), ``"quantize=LEVEL"``."""
    if variant == "plain":
        return Candidate(label=variant)
    return Candidate(gamma, None if variant == "dropit" else variant.removeprefix("quantize="), label=variant)


def _growth(model: torch.nn.Module, forward) -> dict:
    """Resident growth and saved bytes over ``forward()`` (its result kept alive while measured)."""
    gc.collect()
    before = rss_bytes()
    with dropit.CacheMeter(model) as meter:
        out = forward()
    growth = rss_bytes() - before
    report = meter.report()
    del out
    return {"growth_bytes": growth, "meter_bytes": report.total_bytes, "dense_bytes": report.dense_bytes}


def measure_forward(config: str, variant: str, gamma: float, strategy: str = dropit.DEFAULT_STRATEGY) -> dict:
    """In this process: a catalog model (``config`` of :data:`MODELS`) converted per ``variant``, one forward."""
    from dropit.lab.models.catalog import build_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    name, size, batch, _ = MODELS[config]
    model = variants(gamma, strategy)[variant].build(build_model(name, 100).train())
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():  # warm up kernels and allocator paths outside the measurement
        model.eval()(x[:1])
    model.train()
    return {"config": config, "variant": variant, **_growth(model, lambda: model(x))}


def measure_zoo(name: str, variant: str, gamma: float) -> dict:
    """In this process: a zoo model (``"bench"`` size) converted per ``variant``, one forward with its loss."""
    from dropit.lab.models import zoo

    torch.set_num_threads(2)
    case = zoo.build(name, "bench")
    zoo_variant(variant, gamma).build(case.model)
    with torch.no_grad():  # warm up kernels and allocator paths outside the measurement
        case.forward()
    torch.manual_seed(1)
    row = _growth(case.model, lambda: case.loss(case.forward()))
    return {"model": name, "config": case.config, "variant": variant, "meter_bytes": row["meter_bytes"],
            "dense_bytes": row["dense_bytes"], "rss_growth_bytes": row["growth_bytes"]}


def forward_row(config: str, variant: str, *, gamma: float, strategy: str = dropit.DEFAULT_STRATEGY) -> dict:
    """:func:`measure_forward` in a fresh process."""
    return in_fresh_process("dropit.lab.measure.resident:measure_forward", config=config, variant=variant,
                            gamma=gamma, strategy=strategy)


def zoo_row(name: str, variant: str, *, gamma: float) -> dict:
    """:func:`measure_zoo` in a fresh process."""
    return in_fresh_process("dropit.lab.measure.resident:measure_zoo", name=name, variant=variant, gamma=gamma)
