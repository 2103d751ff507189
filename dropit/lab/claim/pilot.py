"""How many epochs of a protocol fit a time budget: a short, measured burst of training steps.

    python -m dropit.lab.claim.pilot params/claim_cnn.yaml --steps 30 --threads 2 --budget-min 20

Times ``steps`` optimizer steps (after ``warmup`` untimed ones) of the
protocol's model with its DropIT arm applied or not, on random batches of its
batch size, and the evaluation forward of the 10,000 test images; from both,
estimates the epochs of 50,000 images that fit ``budget-min`` minutes. Only an
estimate: on a machine shared with other work the figures are low and noisy,
and whoever reports them says so.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn

from dropit.lab.models.catalog import apply_dropit, build_model
from dropit.lab.train.config import RunConfig, load_config
from dropit.lab.train.optim import build_optimizer


def step_throughput(cfg: RunConfig, *, steps: int = 20, warmup: int = 3, threads: int | None = 2) -> dict:
    """Training and evaluation images/s of ``cfg``'s model at its batch size, on random data."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = apply_dropit(build_model(cfg.model, 100, image_size=32, patch_size=cfg.patch_size), cfg)
    opt = build_optimizer(cfg, model)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    x, y = torch.randn(cfg.batch_size, 3, 32, 32), torch.randint(0, 100, (cfg.batch_size,))
    model.train()
    for i in range(warmup + steps):
        if i == warmup:
            t0, c0 = time.perf_counter(), time.process_time()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    train_ips = steps * cfg.batch_size / wall
    # CPU seconds count only the time this process's threads ran: on a shared machine,
    # images per (CPU second / threads) approximates what the same threads would do alone
    busy_ips = steps * cfg.batch_size / (cpu / torch.get_num_threads())
    model.eval()
    xe = torch.randn(cfg.eval_batch_size or 500, 3, 32, 32)
    with torch.no_grad():
        model(xe)
        t0 = time.perf_counter()
        for _ in range(3):
            model(xe)
    eval_ips = 3 * len(xe) / (time.perf_counter() - t0)
    return {"train_images_per_s": train_ips, "train_images_per_busy_s": busy_ips, "eval_images_per_s": eval_ips,
            "threads": torch.get_num_threads()}


def epochs_in_budget(train_ips: float, eval_ips: float, *, budget_s: float, train_images: int = 50_000,
                     test_images: int = 10_000, eval_every: int = 1) -> float:
    """Epochs (training plus the test pass every ``eval_every`` epochs) that fit ``budget_s`` seconds."""
    per_epoch = train_images / train_ips + test_images / eval_ips / eval_every
    return budget_s / per_epoch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("params", help="a protocol's parameter file, e.g. params/claim_cnn.yaml")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. dropit=true dropit_strategy=mink")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--budget-min", type=float, default=20.0)
    args = p.parse_args(argv)
    cfg = load_config(args.params, args.overrides)
    m = step_throughput(cfg, steps=args.steps, threads=args.threads)
    est = epochs_in_budget(m["train_images_per_s"], m["eval_images_per_s"], budget_s=60 * args.budget_min,
                           eval_every=cfg.eval_every)
    busy = epochs_in_budget(m["train_images_per_busy_s"], m["eval_images_per_s"] * m["train_images_per_busy_s"]
                            / m["train_images_per_s"], budget_s=60 * args.budget_min, eval_every=cfg.eval_every)
    print(f"{cfg.model} batch {cfg.batch_size} {' '.join(args.overrides)}: train {m['train_images_per_s']:.0f} img/s "
          f"({m['train_images_per_busy_s']:.0f} per busy second of {m['threads']} threads: about {busy:.1f} epochs alone), "
          f"eval {m['eval_images_per_s']:.0f} img/s on {m['threads']} threads -> about {est:.1f} epochs in "
          f"{args.budget_min:g} min (an estimate; timings from a loaded machine are low)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
