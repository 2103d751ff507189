"""A short fine-tuning run on real text, plain against DropIT + int8: does the loss follow plain's? (issue 30)

    curves = finetune_text.compare(steps=300)               # {"plain": [...], "dropit_int8": [...], ...}
    finetune_text.write_svg(curves, "docs/transformers/finetune.svg")
    python -m dropit.lab.models.finetune_text --steps 300 --out docs/transformers

No weights can be downloaded here, so the model is a small GPT-2 built from its
configuration (random weights, its default dropout 0.1, byte-level: vocabulary
256) and the text is the Python standard library's own source files (sorted
by path: the first ones train, the next ones are held out), a text every
Python installation ships. Both arms start from the same weights and see the
same batches in the same order (AdamW, one seed); the DropIT arm is
``to_dropit(model, gamma=0.9, quantize="int8")`` (attention through
transformers' interface, dropout mask regenerated from a seed). The dropout
draws of the two arms differ (different generators), so the curves differ by
that noise as well as by DropIT's.
"""
from __future__ import annotations

import argparse
import copy
import math
import sysconfig
from pathlib import Path

import torch

import dropit
from dropit.lab.io import write_json, write_text

VARIANTS = ("plain", "dropit_int8")


def stdlib_bytes(limit: int, skip: int = 0) -> torch.Tensor:
    """The standard library's ``.py`` sources, sorted by path, concatenated: bytes [skip, skip + limit) as uint8."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out, seen = bytearray(), 0
    for path in sorted(root.glob("*.py")):  # the top level: no test suites, no site-packages
        data = path.read_bytes()
        if seen + len(data) <= skip:
            seen += len(data)
            continue
        start = max(0, skip - seen)
        out += data[start:start + limit - len(out)]
        seen += len(data)
        if len(out) >= limit:
            break
    if len(out) < limit:
        raise ValueError(f"the standard library at {root} holds fewer than {skip + limit} bytes of top-level sources")
    return torch.frombuffer(out, dtype=torch.uint8).long()  # a copy: out is a bytearray (writable)


def build_model(seq: int, layers: int = 2, width: int = 128, heads: int = 4, seed: int = 0):
    """A byte-level GPT-2 from its configuration (random weights, default dropout)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=layers, n_embd=width, n_head=heads, vocab_size=256, n_positions=seq,
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config)


def _batches(text: torch.Tensor, steps: int, batch: int, seq: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, len(text) - seq, (batch,), generator=generator)
        yield torch.stack([text[s:s + seq] for s in starts.tolist()])


@torch.no_grad()
def held_out_loss(model, text: torch.Tensor, seq: int, batches: int = 8, batch: int = 8) -> float:
    model.eval()
    losses = [float(model(input_ids=ids, labels=ids).loss) for ids in _batches(text, batches, batch, seq, seed=12345)]
    model.train()
    return sum(losses) / len(losses)


def compare(steps: int = 300, seq: int = 128, batch: int = 8, lr: float = 1e-3, seed: int = 0,
            train_bytes: int = 2_000_000, held_out_bytes: int = 200_000) -> dict:
    """Train plain and DropIT + int8 from the same weights on the same batches; the loss curves and held-out losses."""
    train = stdlib_bytes(train_bytes)
    held_out = stdlib_bytes(held_out_bytes, skip=train_bytes)
    base = build_model(seq, seed=seed)
    result: dict = {"steps": steps, "seq": seq, "batch": batch, "lr": lr, "seed": seed,
                    "model": "GPT-2 from its config: 2 layers, width 128, 4 heads, byte vocabulary, dropout 0.1",
                    "text": f"Python standard library top-level sources: {train_bytes} bytes train, "
                            f"{held_out_bytes} held out", "curves": {}, "held_out": {}}
    for variant in VARIANTS:
        model = copy.deepcopy(base).train()
        if variant == "dropit_int8":
            dropit.to_dropit(model, gamma=0.9, quantize="int8")
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        torch.manual_seed(seed + 1)  # the dropout draws' seed
        losses = []
        for ids in _batches(train, steps, batch, seq, seed):
            loss = model(input_ids=ids, labels=ids).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        result["curves"][variant] = losses
        result["held_out"][variant] = held_out_loss(model, held_out, seq)
    return result


def smoothed(values: list[float], window: int = 20) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def write_svg(result: dict, path, width: int = 640, height: int = 360) -> Path:
    """A static figure of the curves (running mean over 20 steps), written as plain SVG."""
    curves = {k: smoothed(v) for k, v in result["curves"].items()}
    values = [v for c in curves.values() for v in c]
    lo, hi = math.floor(min(values) * 4) / 4, math.ceil(max(values) * 4) / 4
    left, right, top, bottom = 60, 20, 30, 50
    n = max(len(c) for c in curves.values())

    def xy(i, v):
        return (left + (width - left - right) * i / max(n - 1, 1),
                top + (height - top - bottom) * (hi - v) / (hi - lo))

    colors = {"plain": "#1f77b4", "dropit_int8": "#d62728"}
    labels = {"plain": "plain", "dropit_int8": "DropIT γ 0.9 + int8"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{width / 2}" y="18" text-anchor="middle">Training loss on stdlib source '
             f'(GPT-2 from config, running mean of 20 steps)</text>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        _, y = xy(0, v)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    for k in range(5):
        i = (n - 1) * k / 4
        x, _ = xy(i, lo)
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 18}" text-anchor="middle">{int(i) + 1}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">step</text>')
    for j, (name, curve) in enumerate(curves.items()):
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in enumerate(curve)))
        parts.append(f'<polyline fill="none" stroke="{colors.get(name, "black")}" stroke-width="1.5" points="{points}"/>')
        held = result.get("held_out", {}).get(name)
        legend = labels.get(name, name) + (f" (held-out loss {held:.3f})" if held is not None else "")
        parts.append(f'<text x="{width - right - 8}" y="{top + 18 + 16 * j}" text-anchor="end" '
                     f'fill="{colors.get(name, "black")}">{legend}</text>')
    parts.append("</svg>")
    return write_text(path, "\n".join(parts) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default="docs/transformers", help="folder for finetune.json and finetune.svg")
    args = parser.parse_args(argv)
    result = compare(steps=args.steps, seq=args.seq, batch=args.batch)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "finetune.json", result)
    write_svg(result, out / "finetune.svg")
    last = {k: sum(v[-50:]) / len(v[-50:]) for k, v in result["curves"].items()}
    for name in VARIANTS:
        print(f"{name:12} mean loss of the last 50 steps {last[name]:.4f}, held out {result['held_out'][name]:.4f}")


if __name__ == "__main__":
    main()
