"""Memory that one training forward keeps for backward, plain against DropIT, on today's models.

    python benchmarks/models.py                       # all models of dropit.lab.models.zoo, "bench" size, gamma 0.9
    python benchmarks/models.py --models gpt2,bert    # some of them
    python benchmarks/models.py --quantize int8       # also to_dropit(model, gamma=0.9, quantize="int8")

Models (``dropit.lab.models.zoo``, built offline from configurations, random weights):
Hugging Face GPT-2, BERT and LLaMA (4 layers, width 512, vocabulary 1000,
sequence 256, batch 8, with their language-modelling loss), timm DeiT-Ti and
ResNet-18 (224x224, batch 8) and torchvision Faster R-CNN (ResNet-50 FPN, two
512x512 images with targets). Variants: plain, ``to_dropit(model, gamma=0.9)``
with its defaults, and one row per ``--quantize`` level.

Each row runs in a fresh process (:mod:`dropit.lab.measure.resident`, as
``benchmarks/memory.py``'s): one training-mode forward (loss included), fp32,
CPU, two threads. It reports the meter's saved bytes (each storage once,
parameters excluded) and the resident growth over the forward with its graph
still alive; ratios are against the plain row of the same model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dropit.lab.measure.resident import zoo_row  # noqa: E402
from dropit.lab.units import MiB  # noqa: E402


def check_quantize(levels: list[str]) -> None:
    """Stop with a message naming the choices when a level is not one ``to_dropit`` ships."""
    import dropit

    unknown = [q for q in levels if q not in dropit.QUANTIZE_LEVELS]
    if unknown:
        raise SystemExit(f"--quantize {','.join(unknown)}: unknown level; choose from {','.join(dropit.QUANTIZE_LEVELS)}")


def markdown(rows: list[dict]) -> str:
    lines = ["| model | configuration | variant | kept for backward (MiB) | vs plain | RSS growth (MiB) | vs plain |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        first = r["variant"] == "plain"
        variant = "plain" if first else ("`to_dropit(model, gamma=0.9)`" if r["variant"] == "dropit" else f"`{r['variant']}`")
        lines.append(
            f"| {r['model'] if first else ''} | {r['config'] if first else ''} | {variant} | "
            f"{r['meter_bytes'] / MiB:.1f} | {r['meter_ratio']:.3f} | {r['rss_growth_bytes'] / MiB:.1f} | {r['rss_ratio']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    from dropit.lab.io import write_json
    from dropit.lab.models import zoo

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--models", default=",".join(zoo.NAMES), help=f"comma-separated, of {','.join(zoo.NAMES)}")
    p.add_argument("--quantize", default="", metavar="LEVEL[,LEVEL]",
                   help="also convert with to_dropit(..., quantize=LEVEL), one row per level")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = sorted(set(names) - set(zoo.NAMES))
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {list(zoo.NAMES)}")
    levels = [q for q in args.quantize.split(",") if q]
    check_quantize(levels)
    variants = ["plain", "dropit"] + [f"quantize={q}" for q in levels]
    print(f"Kept for backward by one training forward, fp32, CPU, gamma={args.gamma} (each row a fresh process)")
    print(f"{'model':<13}{'variant':<18}{'meter MiB':>11}{'ratio':>8}{'RSS MiB':>10}{'ratio':>8}")
    rows = []
    for name in names:
        base = None
        for variant in variants:
            r = zoo_row(name, variant, gamma=args.gamma)
            base = base or r
            r = {**r, "meter_ratio": r["meter_bytes"] / base["meter_bytes"],  # saved bytes over plain's
                 "rss_ratio": r["rss_growth_bytes"] / base["rss_growth_bytes"]}  # resident growth over plain's
            rows.append(r)
            print(f"{name:<13}{variant:<18}{r['meter_bytes'] / MiB:11.1f}{r['meter_ratio']:8.3f}"
                  f"{r['rss_growth_bytes'] / MiB:10.1f}{r['rss_ratio']:8.3f}", flush=True)
    print()
    print(markdown(rows))
    if args.json:
        write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
