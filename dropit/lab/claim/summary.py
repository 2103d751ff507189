"""``DIR/claim.json``: the study's finished runs gathered per protocol and arm, with paired statistics against plain.

    summary = summarize(load_runs("results/claim"))
    summary["protocols"]["cnn"]["arms"]["mink"]["diff_vs_plain"]["top1"]["verdict"]   # e.g. "within noise"

Per protocol and arm: the ``seeds`` and, one value per seed in that order,
``top1``, ``top5`` (test, percent, all test images), ``train_loss`` (mean
training loss of the last epoch) and ``test_loss``; ``stats`` with each
metric's mean and standard deviation over seeds; and ``diff_vs_plain`` per
metric: arm - plain on the seeds both have, with ``mean``, ``ci95_low``,
``ci95_high`` and the computed ``verdict`` (:mod:`dropit.lab.stats`);
``top1_last_quarter_gain`` per seed: the test top-1 gained over the last quarter of
the epochs, which says how far from converged the recipe stopped.
"""
from __future__ import annotations

import json
from pathlib import Path

from dropit.lab.claim.protocols import ARMS
from dropit.lab.stats import describe, paired_difference
from dropit.lab.io import write_json

METRICS = ("top1", "top5", "train_loss", "test_loss")


def last_quarter_gain(run: dict) -> float | None:
    """Test top-1 at the last epoch minus at three quarters of the epochs: how much was still coming at the end."""
    scored = [(e["epoch"], e["val_top1"]) for e in run["epochs"] if e.get("val_top1") is not None]
    if len(scored) < 2:
        return None
    last_epoch, last = scored[-1]
    at = max((e, v) for e, v in scored if e <= 0.75 * last_epoch or e == scored[0][0])
    return last - at[1]


def _arm_block(runs: list[dict]) -> dict:
    runs = sorted(runs, key=lambda r: r["seed"])
    block = {"seeds": [r["seed"] for r in runs]}
    for m in METRICS:
        block[m] = [r["final"][m] for r in runs]
    block["top1_last_quarter_gain"] = [last_quarter_gain(r) for r in runs]
    block["stats"] = {m: {k: v for k, v in describe(block[m]).items() if k != "values"} for m in METRICS}
    return block


def _diff(arm: dict, plain: dict) -> dict:
    common = [s for s in arm["seeds"] if s in plain["seeds"]]
    out = {"seeds": common}
    for m in METRICS:
        a = [arm[m][arm["seeds"].index(s)] for s in common]
        b = [plain[m][plain["seeds"].index(s)] for s in common]
        out[m] = paired_difference(a, b) if common else None
    return out


def summarize(runs: list[dict]) -> dict:
    """The summary of finished run records (:func:`dropit.lab.claim.study.run_record`)."""
    protocols: dict[str, dict] = {}
    for proto in sorted({r["protocol"] for r in runs}):
        mine = [r for r in runs if r["protocol"] == proto]
        order = [a for a in ARMS.get(proto, {}) if any(r["arm"] == a for r in mine)]
        order += sorted({r["arm"] for r in mine} - set(order))
        arms = {a: _arm_block([r for r in mine if r["arm"] == a]) for a in order}
        if "plain" in arms:
            for a, block in arms.items():
                if a != "plain":
                    block["diff_vs_plain"] = _diff(block, arms["plain"])
        cfg = mine[0]["config"]
        protocols[proto] = {"model": cfg.get("model"), "epochs": cfg.get("epochs"), "max_steps": cfg.get("max_steps"),
                            "train_images": cfg.get("subset") or 50_000, "arms": arms}
    return {"runs": sorted(r["id"] for r in runs), "protocols": protocols}


def load_runs(out: str | Path) -> list[dict]:
    """Every finished run's JSON in ``DIR/runs``, sorted by id."""
    return [json.loads(p.read_text()) for p in sorted(Path(out).glob("runs/*.json"))]


def mechanism_files(out: str | Path) -> list[Path]:
    """The study's mechanism measurements in ``DIR``, one file per DropIT strategy (``mechanism.json``,
    ``mechanism_sampled.json``, ...), sorted by name; not the strategies compared at equal memory."""
    return [p for p in sorted(Path(out).glob("mechanism*.json")) if p not in equal_memory_files(out)]


def equal_memory_files(out: str | Path) -> list[Path]:
    """The mechanism files that compare strategies at equal kept bytes (``mechanism*equal_memory*.json``)."""
    return sorted(Path(out).glob("mechanism*equal_memory*.json"))


def write_summary(out: str | Path) -> dict:
    """Summarize ``DIR/runs/*.json`` into ``DIR/claim.json``; the summary."""
    summary = summarize(load_runs(out))
    write_json(Path(out) / "claim.json", summary)
    return summary


def table_rows(summary: dict, metric: str = "top1") -> list[dict]:
    """One row per protocol and arm: mean ± std of ``metric`` and the paired difference to plain, for tables."""
    rows = []
    for proto, p in summary["protocols"].items():
        for arm, b in p["arms"].items():
            s, d = b["stats"][metric], (b.get("diff_vs_plain") or {}).get(metric)
            gains = [g for g in b.get("top1_last_quarter_gain", []) if g is not None]
            rows.append({"protocol": proto, "arm": arm, "seeds": len(b["seeds"]), "mean": s["mean"], "std": s["std"],
                         "last_quarter_gain": sum(gains) / len(gains) if gains else None,
                         "diff": d["mean"] if d else None, "ci95_low": d["ci95_low"] if d else None,
                         "ci95_high": d["ci95_high"] if d else None, "verdict": d["verdict"] if d else "(baseline)"})
    return rows
