"""Kept for backward by today's transformers, plain against DropIT + int8 (issue 30): docs/memory.md "today's models".

    python benchmarks/transformers_memory.py             # the three models of the issue (two minutes on a CPU)
    python benchmarks/transformers_memory.py --json FILE --seq-scale 0.25
    python benchmarks/transformers_memory.py --peak      # and the step's peak, each in a fresh process
    python benchmarks/transformers_memory.py --time      # and step time against plain, eager and compiled (alone!)

Hugging Face GPT-2 (sequence 1024, its default dropout 0.1), BERT (masked LM,
sequence 512, its default dropout) and LLaMA (sequence 1024, 8 heads with 4
key/value heads, SwiGLU), 4 layers, width 512, vocabulary 1000, batch 2, built
from their configurations with random weights, transformers' default ``sdpa``
attention, fp32, CPU. For each: the bytes one training-mode forward with its
loss keeps for backward (``dropit.measure_cache``), plain and
``to_dropit(model, gamma=0.9, quantize="int8")``; the rows still stored
"plain" above 5% of the total; and the relative error of the whole gradient
against plain at ``gamma=0, quantize="int8"`` (dropout off for that check, so
both runs draw no mask: the error is that of the int8 companions alone).
Bytes do not depend on the machine's load. ``--time`` adds the step time
(forward, loss, backward) of DropIT 0.9 + int8 against plain's, eager and each
compiled (``torch.compile``, its compiled plain as the baseline): the median of
per-round ratios over interleaved rounds (:mod:`dropit.timing`); run it with
nothing else on the machine.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dropit  # noqa: E402
from dropit.lab.io import write_json  # noqa: E402
from dropit.lab.measure.process import in_fresh_process  # noqa: E402
from dropit.lab.units import MiB  # noqa: E402
from dropit.timing import time_against  # noqa: E402

LAYERS, WIDTH, HEADS, VOCAB, BATCH = 4, 512, 8, 1000, 2


def build(name: str, seq: int, dropout: bool = True):
    """(model, its forward's keyword arguments) for ``name`` in "gpt2", "bert", "llama", seeded."""
    import transformers

    torch.manual_seed(0)
    if name == "gpt2":
        extra = {} if dropout else dict(attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=LAYERS, n_embd=WIDTH, n_head=HEADS, vocab_size=VOCAB, n_positions=seq, bos_token_id=0,
            eos_token_id=0, **extra))
    elif name == "bert":
        extra = {} if dropout else dict(attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0)
        model = transformers.BertForMaskedLM(transformers.BertConfig(
            num_hidden_layers=LAYERS, hidden_size=WIDTH, num_attention_heads=HEADS, intermediate_size=4 * WIDTH,
            vocab_size=VOCAB, max_position_embeddings=seq, **extra))
    elif name == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            num_hidden_layers=LAYERS, hidden_size=WIDTH, num_attention_heads=HEADS, num_key_value_heads=HEADS // 2,
            intermediate_size=WIDTH * 11 // 4, vocab_size=VOCAB, max_position_embeddings=seq, bos_token_id=0,
            eos_token_id=0, pad_token_id=0))
    else:
        raise ValueError(f"unknown model {name!r}")
    ids = torch.randint(0, VOCAB, (BATCH, seq), generator=torch.Generator().manual_seed(1))
    return model.train(), dict(input_ids=ids, labels=ids)


MODELS = {"gpt2": 1024, "bert": 512, "llama": 1024}  # the sequence lengths


def gradient_error(name: str, seq: int) -> float:
    """||g_int8 - g_plain|| / ||g_plain|| over all parameters, gamma 0, no dropout."""
    plain, batch = build(name, seq, dropout=False)
    model = dropit.to_dropit(copy.deepcopy(plain), gamma=0.0, quantize="int8")
    grads = []
    for m in (plain, model):
        m(**batch).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    return float((grads[1] - grads[0]).norm() / grads[0].norm())


def measure(name: str, seq: int, with_gradients: bool = True) -> dict:
    model, batch = build(name, seq)
    plain = dropit.measure_cache(model, **batch)
    dropit.to_dropit(model, gamma=0.9, quantize="int8")
    converted = dropit.measure_cache(model, **batch)
    total = converted.total_bytes
    dense_rows = [
        {"layer": layer.name or "(root)", "kind": layer.kind, "mib": layer.storage["plain"] / MiB,
         "share": layer.storage["plain"] / total}
        for layer in converted.layers if layer.storage.get("plain", 0) > 0.05 * total
    ]
    row = {
        "model": name, "seq": seq, "batch": BATCH, "layers": LAYERS, "width": WIDTH,
        "plain_mib": plain.total_bytes / MiB, "dropit_int8_mib": total / MiB,
        "vs_plain": total / plain.total_bytes, "by_storage_mib": {k: v / MiB for k, v in converted.by_storage().items()},
        "plain_rows_above_5pct": dense_rows,
    }
    if with_gradients:
        row["gradient_error_int8"] = gradient_error(name, seq)
    return row


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def step_peak_here(name: str, seq: int, variant: str) -> float:
    """In this (fresh) process: the resident peak over one forward + backward above the resident size before, MiB.

    Linux: the peak (VmHWM) is reset just before the step (``5 > /proc/self/clear_refs``), so what building
    the model touched does not hide the step's own peak."""
    import gc

    model, batch = build(name, seq)
    if variant == "dropit_int8":
        dropit.to_dropit(model, gamma=0.9, quantize="int8")
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    model(**batch).loss.backward()
    return (_status_kib("VmHWM") - before) / 1024


def step_peak(name: str, seq: int, variant: str) -> float:
    """:func:`step_peak_here` in a fresh process (the kit's one runner, :mod:`dropit.lab.measure.process`)."""
    return in_fresh_process("benchmarks.transformers_memory:step_peak_here", name=name, seq=seq, variant=variant)


def step_times(name: str, seq: int, rounds: int, compiled: bool) -> dict:
    """DropIT 0.9 + int8's step time against plain's (both compiled, or both eager): the timer's figures."""
    steps = {}
    for variant in ("plain", "dropit_int8"):
        model, batch = build(name, seq)
        if variant == "dropit_int8":
            dropit.to_dropit(model, gamma=0.9, quantize="int8")
        run = torch.compile(model) if compiled else model

        def step(run=run, model=model, batch=batch):
            for p in model.parameters():
                p.grad = None
            run(**batch).loss.backward()

        steps[variant] = step
    timing = time_against(steps, "plain", rounds=rounds, warmup=2 if compiled else 1)["dropit_int8"]
    return {"ratio": timing.ratio, "q1": timing.ratio_q1, "q3": timing.ratio_q3, "step_s": timing.step_s,
            "rounds": rounds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seq-scale", type=float, default=1.0, help="multiply the sequence lengths (tests: small)")
    parser.add_argument("--no-gradients", action="store_true")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--peak", action="store_true",
                        help="also the step's peak: resident high-water growth over forward + backward, fresh processes")
    parser.add_argument("--time", action="store_true", help="also step time against plain, eager and compiled")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds (--time)")
    args = parser.parse_args(argv)
    rows = []
    for name in args.models.split(","):
        seq = max(8, int(MODELS[name] * args.seq_scale))
        row = measure(name, seq, not args.no_gradients)
        if args.peak:
            row["step_peak_mib"] = {variant: step_peak(name, seq, variant) for variant in ("plain", "dropit_int8")}
        rows.append(row)
        error = f", gradient error (gamma 0 + int8 vs plain) {row['gradient_error_int8']:.4f}" if "gradient_error_int8" in row else ""
        print(f"{name:6} seq {seq:5}: plain {row['plain_mib']:8.1f} MiB, DropIT 0.9 + int8 {row['dropit_int8_mib']:7.1f} MiB"
              f" = {row['vs_plain']:.3f} of plain{error}")
        if "step_peak_mib" in row:
            peaks = row["step_peak_mib"]
            print(f"    step's peak (resident growth, forward + backward): plain {peaks['plain']:.1f} MiB, "
                  f"DropIT 0.9 + int8 {peaks['dropit_int8']:.1f} MiB = {peaks['dropit_int8'] / max(peaks['plain'], 1e-9):.3f}")
        if args.time:
            row["step_time_vs_plain"] = {kind: step_times(name, seq, args.rounds, kind == "compiled")
                                         for kind in ("eager", "compiled")}
            for kind, t in row["step_time_vs_plain"].items():
                print(f"    step time vs plain, {kind}: {t['ratio']:.3f}x ({t['q1']:.2f}-{t['q3']:.2f}), "
                      f"{args.rounds} rounds")
        for dense in row["plain_rows_above_5pct"]:
            print(f"    still plain: {dense['layer']} ({dense['kind']}) {dense['mib']:.1f} MiB, {dense['share']:.1%}")
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    main()
