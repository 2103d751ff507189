"""Process memory that one training-mode forward keeps, plain against DropIT, each in a fresh process.

    python benchmarks/memory.py            # CIFAR ResNet-18 (batch 128) and ViT-B/16 (batch 8), fp32, CPU

A command line over :mod:`dropit.lab.measure.resident`: for each variant
(``to_dropit(model, gamma=0.9)`` with its defaults; with ``quantize="int8"`` or
``"int4"``; or the published way: no ReLU companion) a new Python process
builds the catalog's model, converts it and runs one training-mode forward. It
reports the resident growth over that forward, with the output (and so the
autograd graph and everything saved for backward) still alive, next to the
meter's saved bytes for the same forward; the fresh process's environment is
:mod:`dropit.lab.measure.process`'s.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dropit.lab.measure.resident import forward_row, variants  # noqa: E402
from dropit.lab.units import MiB  # noqa: E402

CONFIGS = ("resnet18-cifar", "vit_b_16")  # dropit.lab.measure.frontier.MODELS: the frontier's models and batches


def main(argv=None):
    import dropit

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--strategy", default=dropit.DEFAULT_STRATEGY)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--variants", default=",".join(variants(0.9)), help="plain first: ratios are against it")
    args = p.parse_args(argv)
    print(f"Process memory kept by one training-mode forward, fp32, CPU, gamma={args.gamma}, "
          f"strategy={args.strategy} (each row a fresh process)")
    print(f"{'model':<16}{'variant':<11}{'RSS growth MiB':>15}{'ratio':>8}{'meter MiB':>11}{'meter/RSS':>10}")
    results = []
    for config in args.configs.split(","):
        base = None
        for variant in args.variants.split(","):
            r = forward_row(config, variant, gamma=args.gamma, strategy=args.strategy)
            base = base or r["growth_bytes"]
            r = {**r, "ratio": r["growth_bytes"] / base}  # resident growth over plain's
            results.append(r)
            print(f"{config:<16}{variant:<11}{r['growth_bytes'] / MiB:15.1f}{r['ratio']:8.3f}"
                  f"{r['meter_bytes'] / MiB:11.1f}{r['meter_bytes'] / r['growth_bytes']:10.3f}", flush=True)
    return results


if __name__ == "__main__":
    main()
