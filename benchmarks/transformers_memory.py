"""Kept for backward by today's transformers, plain against DropIT + int8 (issue 30): docs/memory.md "today's models".

    python benchmarks/transformers_memory.py             # the three models of the issue (a few minutes on a CPU)
    python benchmarks/transformers_memory.py --json FILE --seq-scale 0.25

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
Bytes do not depend on the machine's load; no times are printed.
"""
from __future__ import annotations

import argparse
import copy
import json

import torch

import dropit

MiB = 2**20
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seq-scale", type=float, default=1.0, help="multiply the sequence lengths (tests: small)")
    parser.add_argument("--no-gradients", action="store_true")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    rows = []
    for name in args.models.split(","):
        seq = max(8, int(MODELS[name] * args.seq_scale))
        row = measure(name, seq, not args.no_gradients)
        rows.append(row)
        error = f", gradient error (gamma 0 + int8 vs plain) {row['gradient_error_int8']:.4f}" if "gradient_error_int8" in row else ""
        print(f"{name:6} seq {seq:5}: plain {row['plain_mib']:8.1f} MiB, DropIT 0.9 + int8 {row['dropit_int8_mib']:7.1f} MiB"
              f" = {row['vs_plain']:.3f} of plain{error}")
        for dense in row["plain_rows_above_5pct"]:
            print(f"    still plain: {dense['layer']} ({dense['kind']}) {dense['mib']:.1f} MiB, {dense['share']:.1%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
