"""Process memory that one training-mode forward keeps, plain against DropIT, each in a fresh process.

    python benchmarks/memory.py            # CIFAR ResNet-18 (batch 128) and ViT-B/16 (batch 8), fp32, CPU

For each configuration a new Python process builds the model, converts it
(``to_dropit(model, gamma=0.9)`` with its defaults; with ``quantize="int8"``
or ``"int4"``; or the published way: no ReLU companion), and runs one
training-mode forward. It reports the growth of
the process's resident memory over that forward, with the output (and so the
autograd graph and everything saved for backward) still alive, next to the
memory meter's total for the same forward. ``MALLOC_MMAP_THRESHOLD_=65536``
makes glibc return freed large tensors to the system, so the growth is what
stays allocated, not what the allocator kept cached.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 2**20

CONFIGS = {
    "resnet18-cifar": dict(model="resnet18_cifar", batch=128, size=32),
    "vit_b_16": dict(model="vit_b_16", batch=8, size=224),
}
VARIANTS = {
    "plain": None,
    "dropit": dict(relu_mask=True),
    "+int8": dict(quantize="int8"),  # norms, activations and attention quantized too (lossy)
    "+int4": dict(quantize="int4"),
    "published": dict(relu_mask=False, compact_maxpool=False),  # no companions, as the published code
}


def one(config: str, variant: str, gamma: float, strategy: str | None) -> dict:
    """Run in the child process: one forward, memory growth and meter total."""
    import torch

    sys.path.insert(0, str(ROOT))
    import dropit
    from dropit.lab.models.catalog import build_model
    from dropit.lab.train.runtime import rss_bytes

    torch.set_num_threads(2)
    torch.manual_seed(0)
    c = CONFIGS[config]
    model = build_model(c["model"], 100).train()
    options = VARIANTS[variant]
    if options is not None:
        dropit.to_dropit(model, gamma=gamma, **({"strategy": strategy} if strategy else {}), **options)
    x = torch.randn(c["batch"], 3, c["size"], c["size"])
    with torch.no_grad():  # warm up kernels and allocator paths outside the measurement
        model.eval()(x[:1])
    model.train()
    gc.collect()
    before = rss_bytes()
    with dropit.CacheMeter(model) as meter:
        out = model(x)
    growth = rss_bytes() - before
    report = meter.report()
    del out
    return {
        "config": config,
        "variant": variant,
        "growth_bytes": growth,
        "meter_bytes": report.total_bytes,
        "dense_bytes": report.dense_bytes,
    }


def run_child(config, variant, gamma, strategy) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="2")
    cmd = [sys.executable, __file__, "--child", config, variant, "--gamma", str(gamma)]
    if strategy:
        cmd += ["--strategy", strategy]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=2, metavar=("CONFIG", "VARIANT"))
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--strategy", default=None, help="default: to_dropit's default strategy")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--variants", default=",".join(VARIANTS), help="plain first: ratios are against it")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(one(*args.child, args.gamma, args.strategy)))
        return
    print(f"Process memory kept by one training-mode forward, fp32, CPU, gamma={args.gamma}, "
          f"strategy={args.strategy or 'default'} (each row a fresh process)")
    print(f"{'model':<16}{'variant':<11}{'RSS growth MiB':>15}{'ratio':>8}{'meter MiB':>11}{'meter/RSS':>10}")
    results = []
    for config in args.configs.split(","):
        base = None
        for variant in args.variants.split(","):
            r = run_child(config, variant, args.gamma, args.strategy)
            base = base or r["growth_bytes"]
            r["ratio"] = r["growth_bytes"] / base
            results.append(r)
            print(f"{config:<16}{variant:<11}{r['growth_bytes'] / MiB:15.1f}{r['ratio']:8.3f}"
                  f"{r['meter_bytes'] / MiB:11.1f}{r['meter_bytes'] / r['growth_bytes']:10.3f}", flush=True)
    return results


if __name__ == "__main__":
    main()
