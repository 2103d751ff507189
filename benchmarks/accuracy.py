"""Short CIFAR-100 runs: plain, DropIT, and DropIT with its lossy companions, same seed and data.

    DROPIT_DATA=../shared/data python benchmarks/accuracy.py            # resnet_mini then vit_tiny, about 40 min on 2 cores
    python benchmarks/accuracy.py --models resnet_mini --runs plain,mink,sampled --subset 10000 --epochs 4

Same initial weights, data order and augmentation (the strategies and the
quantizers use no RNG); only what the converted layers keep for backward
differs (gamma = 0.9, first conv and classifier dense). Runs: ``plain``;
``mink`` and ``sampled`` (DropIT, exact and default strategy); ``int8`` and
``int4`` (the default strategy with ``quantize=``). The ResNet exercises the
quantized BatchNorm, the ViT the quantized LayerNorm, GELU and attention.

Noise: the standard error of a top-1 measured on n test images is
sqrt(p (1 - p) / n); two runs' top-1 differ by that noise alone about sqrt(2)
times it. Training has its own spread on top (a different gradient early on
sends a short run elsewhere): ``--seed 1 --runs plain`` measures it.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dropit.lab.stats import top1_stderr  # noqa: E402
from dropit.lab.train.config import RunConfig  # noqa: E402
from dropit.lab.train.loop import run  # noqa: E402

RUNS = {
    "plain": {},
    "mink": dict(dropit=True, dropit_strategy="mink"),
    "sampled": dict(dropit=True, dropit_strategy="sampled"),
    "int8": dict(dropit=True, dropit_strategy="sampled", dropit_quantize="int8"),
    "int4": dict(dropit=True, dropit_strategy="sampled", dropit_quantize="int4"),
}
# sized so that both models' four default runs finish in about 40 minutes on two CPU cores
SIZES = {"resnet_mini": dict(subset=20000, epochs=4, lr=0.05), "vit_tiny": dict(subset=10000, epochs=4, lr=1e-3)}


def train(model: str, runs: list[str], args, root: str) -> list[tuple[str, dict]]:
    size = SIZES.get(model, {})
    vit = model.startswith("vit")
    common = dict(model=model, dataset="cifar100", data_dir=root, val_subset=args.val_subset,
                  subset=args.subset or size.get("subset", 10000), epochs=args.epochs or size.get("epochs", 3),
                  batch_size=50, lr=size.get("lr", 0.05), schedule="cosine", seed=args.seed, log_every=10_000, threads=2,
                  checkpoint=False, cache_batch=50,
                  optimizer="adamw" if vit else "sgd", weight_decay=0.05 if vit else 5e-4)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in runs:
            extra = dict(RUNS[name])
            if extra:
                extra["dropit_gamma"] = args.gamma
            final = run(RunConfig(**common, **extra, out_dir=f"{tmp}/{name}"))["final"]
            rows.append((name, final))
            print(f"{model} {name}: top-1 {final['top1']:.2f}", flush=True)
    print(f"\nCIFAR-100, {model}, {common['subset']} train images, {common['epochs']} epochs, seed {args.seed}, "
          f"gamma={args.gamma}, {args.val_subset} test images")
    print(f"{'run':<10}{'top-1':>8}{'+-SE':>7}{'top-5':>8}{'cache MiB':>11}{'images/s':>10}")
    for name, f in rows:
        se = top1_stderr(f["top1"], args.val_subset)
        print(f"{name:<10}{f['top1']:8.2f}{se:7.2f}{f['top5']:8.2f}{f['cache_bytes'] / 2**20:11.1f}"
              f"{f['images_per_s']:10.1f}")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet_mini,vit_tiny")
    p.add_argument("--runs", default="plain,sampled,int8,int4", help=f"any of {', '.join(RUNS)}")
    p.add_argument("--epochs", type=int, default=None, help="default: per model (SIZES)")
    p.add_argument("--subset", type=int, default=None, help="train images; default: per model (SIZES)")
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0, help="another seed: the spread of training itself")
    p.add_argument("--val-subset", type=int, default=10000, help="test images evaluated (10000: all)")
    args = p.parse_args(argv)
    root = os.environ.get("DROPIT_DATA")
    if not root:
        sys.exit("set DROPIT_DATA to the folder holding cifar-100-python/")
    runs = args.runs.split(",")
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        sys.exit(f"unknown runs {unknown}; choose among {', '.join(RUNS)}")
    return {model: train(model, runs, args, root) for model in args.models.split(",")}


if __name__ == "__main__":
    main()
