"""The paper's mechanism, measured: minibatch gradient noise, and DropIT's bias, against an exact gradient.

    rows = noise_and_bias(model, batches, gammas=(0.5, 0.8, 0.9))   # at the model's current weights
    rows = probe_run(cfg, at_steps=(100, 1000), gammas=(0.8,))       # at a few points of a training run

The reference set is ``K`` minibatches of equal size. At fixed weights, for
each minibatch ``k`` the weight gradient ``g_k`` of the layers DropIT converts
(every conv/linear but the first convolution and the classifier) is computed
plainly and, on a converted copy of the same weights, with DropIT at each
gamma. The exact gradient ``g`` is the mean of the plain ``g_k`` over the whole
reference set (the gradient of its loss; with BatchNorm, the expectation of the
minibatch gradient that SGD follows). Per gamma:

- ``noise_plain``, ``noise_dropit``: the minibatch gradient's variance, the trace
  of its covariance, sum_k ||g_k - mean||² / (K - 1);
- ``bias``: ||mean_k g_k(DropIT) - g||, DropIT's expected gradient minus the
  exact one, and ``bias_rel`` = bias / ||g||;
- ``mse_plain``, ``mse_dropit``: mean_k ||g_k - g||², how far one step's gradient
  is from the exact one (noise + bias², up to the (K - 1)/K of the estimate);
- ``bias_se``: the standard error of ``bias``, sqrt(tr Cov(g_k(DropIT) - g_k) / K):
  the bias a strategy with none would still show on K minibatches (its draws and
  the batches' own spread), so an unbiased strategy reads ``bias`` near it.

Strategies are compared at a gamma each (``arms``: (strategy, gamma) pairs), for
example at equal kept bytes (:func:`dropit.equal_memory.gamma_for_bytes`; the
command line's ``--match-memory``). The sampling strategies' draws are keyed by
minibatch (:func:`dropit.seed_draws`), so every call measures the same draws.

The paper argues DropIT lowers gradient noise; these numbers show whether the
noise it removes outweighs the bias it adds, per gamma. Dropping also shrinks
the weight gradient, and a shrunk gradient is nearer the exact one whenever
noise dominates, so :func:`plain_scale_as_close` gives the yardstick: the factor
by which plain's minibatch gradient would have to be scaled (a learning rate
on the converted layers) to be as close to the exact gradient as DropIT's.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Sequence

import torch
import torch.nn as nn

from dropit.draws import seed_draws
from dropit.lab.models.catalog import apply_dropit, default_dropit_exclude, dropit_filter
from dropit.lab.train.config import RunConfig


def converted_weights(model: nn.Module, exclude: Sequence[str] | None = None) -> list[str]:
    """Names of the weights of the conv/linear layers DropIT converts (all but ``exclude``, default first + classifier)."""
    keep = dropit_filter(default_dropit_exclude(model) if exclude is None else exclude)
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [f"{name}.weight" if name else "weight" for name, m in model.named_modules()
            if isinstance(m, kinds) and keep(m, name)]


def _gradients(model: nn.Module, batches, names: list[str], loss_fn) -> torch.Tensor:
    """(K, P): the flattened gradient of the named weights, one row per minibatch."""
    params = dict(model.named_parameters())
    model.train()
    rows = []
    for k, (x, y) in enumerate(batches):
        seed_draws(_DRAW_SEED, k)
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        rows.append(torch.cat([params[n].grad.detach().flatten().double() for n in names]))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


_DRAW_SEED = 20_221_302  # the sampling strategies' draws in the reference set, one step per minibatch


def _variance(g: torch.Tensor) -> float:
    return float(((g - g.mean(0)) ** 2).sum(1).sum() / (len(g) - 1))


def noise_and_bias(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], *,
                   gammas: Sequence[float] = (0.5, 0.8, 0.9), strategy: str = "mink",
                   arms: Sequence[tuple[str, float]] | None = None,
                   exclude: Sequence[str] | None = None, quantize: str | None = None,
                   loss_fn=None) -> list[dict]:
    """One row per (strategy, gamma) of ``arms``, default ``strategy`` at each of ``gammas`` (see the module
    docstring), at ``model``'s current weights; ``model`` is left unchanged."""
    if len(batches) < 2:
        raise ValueError(f"noise needs at least two minibatches, got {len(batches)}")
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    names = converted_weights(model, exclude)
    with torch.random.fork_rng(devices=[]):
        plain = _gradients(copy.deepcopy(model), batches, names, loss_fn)
        exact = plain.mean(0)
        base = {"noise_plain": _variance(plain), "mse_plain": float(((plain - exact) ** 2).sum(1).mean()),
                "exact_norm": float(exact.norm()), "batches": len(batches), "batch_size": len(batches[0][1]),
                "weights": int(plain.shape[1])}
        rows = []
        for arm_strategy, gamma in (arms if arms is not None else [(strategy, g) for g in gammas]):
            cfg = RunConfig(dropit=True, dropit_strategy=arm_strategy, dropit_gamma=gamma, dropit_quantize=quantize,
                            dropit_exclude=list(default_dropit_exclude(model) if exclude is None else exclude))
            dropped = _gradients(apply_dropit(copy.deepcopy(model), cfg), batches, names, loss_fn)
            bias = float((dropped.mean(0) - exact).norm())
            rows.append({"gamma": gamma, "strategy": arm_strategy, **base, "noise_dropit": _variance(dropped),
                         "bias": bias, "bias_rel": bias / max(base["exact_norm"], 1e-30),
                         "bias_se": math.sqrt(_variance(dropped - plain) / len(batches)),
                         "mse_dropit": float(((dropped - exact) ** 2).sum(1).mean())})
    return rows


def plain_scale_as_close(row: dict) -> float | None:
    """The factor c for which c times plain's minibatch gradient is, over the reference set, as close to the exact
    gradient as DropIT's (its ``mse_dropit``): the solution nearer 1; None where no scaling of plain gets that close.

    With g the mean of the K plain gradients g_k, mean_k ||c g_k - g||² = c² (mse + |g|²) - 2c |g|² + |g|²
    exactly, so c solves a quadratic. c < 1: what DropIT gains in distance, shrinking plain's gradient by c
    (lowering the converted layers' learning rate) gains too; c = 1: the same distance; c > 1: DropIT is farther.
    """
    m, target, g2 = row["mse_plain"], row["mse_dropit"], row["exact_norm"] ** 2
    a = m + g2  # mean_k |g_k|²
    disc = g2 * g2 - a * (g2 - target)
    if a <= 0 or disc < 0:
        return None
    return min(((g2 - math.sqrt(disc)) / a, (g2 + math.sqrt(disc)) / a), key=lambda c: abs(c - 1))


class MechanismProbe:
    """A loop callback: :func:`noise_and_bias` at the given optimizer steps of a run; rows gathered in ``rows``."""

    def __init__(self, batches, *, at_steps: Sequence[int], gammas: Sequence[float] = (), strategy: str = "mink",
                 arms: Sequence[tuple[str, float]] | None = None, on_rows=None):
        self.batches, self.at_steps = batches, set(at_steps)
        self.arms = list(arms) if arms is not None else [(strategy, g) for g in gammas]
        self.on_rows = on_rows  # called with every row so far after each measured step (a long probe saves as it goes)
        self.rows: list[dict] = []

    def on_step(self, state) -> None:
        if state.step in self.at_steps:
            for row in noise_and_bias(state.model, self.batches, arms=self.arms):
                self.rows.append({"step": state.step, "epoch": state.step / state.steps_per_epoch, **row})
            if self.on_rows is not None:
                self.on_rows(self.rows)


def reference_batches(cfg: RunConfig, *, batches: int = 16, batch_size: int | None = None, seed: int = 1234,
                      device: str | torch.device = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``batches`` minibatches of normalised, unaugmented training images (a seeded random draw) of ``cfg``'s data."""
    from dropit.lab.data.augment import normalize
    from dropit.lab.data.datasets import build_datasets, mean_std
    from dropit.lab.data.tensor_loader import uint8_images_of

    train, _, _ = build_datasets(cfg)
    images, targets = uint8_images_of(train)
    b = batch_size or cfg.batch_size
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[: batches * b]
    mean, std = (torch.tensor(v) for v in mean_std(cfg.dataset, cfg.mean_std))
    x = normalize(images[pick], mean, std).to(device)
    y = targets[pick].to(device)
    return [(x[i * b:(i + 1) * b], y[i * b:(i + 1) * b]) for i in range(batches)]


def probe_run(cfg: RunConfig, *, at_steps: Sequence[int], gammas: Sequence[float] = (0.5, 0.8, 0.9),
              strategy: str = "mink", arms: Sequence[tuple[str, float]] | None = None, batches: int = 16,
              on_rows=None) -> list[dict]:
    """Train ``cfg`` (plain) up to the last of ``at_steps`` and measure :func:`noise_and_bias` at each of them."""
    from dropit.lab.train.loop import run

    cfg = dataclasses.replace(cfg, dropit=False, max_steps=max(at_steps), checkpoint=False, resume=False)
    probe = MechanismProbe(reference_batches(cfg, batches=batches), at_steps=at_steps, gammas=gammas, strategy=strategy,
                           arms=arms, on_rows=on_rows)
    run(cfg, callbacks=[probe])
    return probe.rows


def main(argv: list[str] | None = None) -> int:
    """``python -m dropit.lab.claim.mechanism --out DIR/mechanism.json [--protocol cnn] [--steps 50,500] [--gammas ...]
    [--strategy mink]``."""
    import argparse
    from pathlib import Path

    from dropit.lab.claim.protocols import run_config
    from dropit.lab.io import write_json

    p = argparse.ArgumentParser(description="gradient noise and DropIT's bias at a few steps of a plain run")
    p.add_argument("--out", required=True, help="the JSON file to write (rows, one per step and gamma)")
    p.add_argument("--protocol", default="cnn")
    p.add_argument("--steps", default="50,400,1500", help="optimizer steps at which to measure")
    p.add_argument("--gammas", default="0.5,0.8,0.9")
    p.add_argument("--strategy", default="mink",
                   help="DropIT's strategy, or several comma-separated: mink (the paper's), sampled (the kit's default), "
                        "unbiased, rescaled")
    p.add_argument("--match-memory", action="store_true",
                   help="take --gammas as mink's: each strategy runs at the gamma that keeps mink's bytes there")
    p.add_argument("--batches", type=int, default=16, help="minibatches in the reference set")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",")]
    work = Path(args.out).parent / "work" / f"mechanism-{args.protocol}"  # the study's ignored work/ folder
    cfg = run_config(args.protocol, "plain", seed=0, out_dir=work, overrides=args.overrides)
    gammas = [float(g) for g in args.gammas.split(",")]
    arms = [(s, g) for s in args.strategy.split(",") for g in gammas]
    if args.match_memory:
        arms = [(s, memory_matched_gamma(cfg, s, g)) for s, g in arms]
    def save(rows: list[dict], complete: bool = False) -> None:  # after each measured step: a stopped probe keeps them
        write_json(args.out, {"protocol": args.protocol, "config": cfg.to_dict(), "match_memory": args.match_memory,
                              "steps": steps, "complete": complete, "rows": rows})

    rows = probe_run(cfg, at_steps=steps, arms=arms, batches=args.batches, on_rows=save)
    save(rows, complete=True)
    for r in rows:
        print(f"step {r['step']:>6} {r['strategy']} gamma {r['gamma']:.4g}: noise plain {r['noise_plain']:.4g} "
              f"dropit {r['noise_dropit']:.4g}  bias {r['bias']:.4g} ({100 * r['bias_rel']:.1f}% of |g|, se "
              f"{r['bias_se']:.3g})  mse plain {r['mse_plain']:.4g} dropit {r['mse_dropit']:.4g}")
    return 0


def memory_matched_gamma(cfg: RunConfig, strategy: str, mink_gamma: float) -> float:
    """The gamma at which ``strategy`` keeps what ``"mink"`` keeps at ``mink_gamma`` in ``cfg``'s model and batch,
    rounded up to 1e-3 (never more bytes than mink's)."""
    from dropit.equal_memory import gamma_for_bytes, kept_bytes
    from dropit.lab.models.catalog import build_model, default_image_size

    size = cfg.image_size or default_image_size(cfg.model, cfg.dataset)
    model = build_model(cfg.model, 10, image_size=size, patch_size=cfg.patch_size)  # the classifier is not converted
    shape = (cfg.batch_size, 3, size, size)
    options = {"module_filter_fn": dropit_filter(default_dropit_exclude(model))}
    target = kept_bytes(model, shape, "mink", mink_gamma, **options)
    if kept_bytes(model, shape, strategy, mink_gamma, **options) <= target:  # mink's capacity (rescaled): its gamma
        return mink_gamma
    return math.ceil(gamma_for_bytes(model, shape, strategy, target, **options) * 1000 - 1e-6) / 1000


if __name__ == "__main__":
    raise SystemExit(main())
