"""The paper's tables (CIFAR-100, ImageNet, the ICLR release's DeiT) with our runs beside them.

    rows = build_table("cifar100", ["runs/c100_r18_quick", "runs/c100_r18_dropit_quick"])
    print(to_markdown(rows))
    tables_markdown(runs)     # all three tables, with titles

A run is a metrics dict returned by :func:`dropit.lab.train.loop.run`, a path to its
``metrics.json``, or its run folder. Each run fills the paper row it stands
for: ``config.paper_row`` if set, else inferred from the dataset (CIFAR-100, or
ImageNet/Imagenette for the ImageNet table), the model family (ResNet or ViT;
a DeiT goes to the ICLR table, matched on its γ there) and whether DropIT was
on; a later run replaces an earlier one for the same row. Every row says what actually ran (model, epochs, images, resolution), so
a quick run on a small model is never mistaken for the paper's recipe; rows
without a run keep the paper's numbers and say "not run".

"Cache (MB)" of ours is the DropIT meter's bytes kept for backward (activations
only); the paper's column is the CUDA peak of one training forward (weights,
inputs and buffers included), so the two are comparable in trend, not in value. Runs on a GPU also record
the paper's measure (``cache_peak_cuda_mb`` in the plain-data rows).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from dropit.lab import stats
from dropit.lab.models.catalog import default_image_size
from dropit.lab.paper import ICLR_ROWS, TABLE_TITLES, TABLES, table_rows
from dropit.lab.units import mib

RunLike = dict | str | Path

COLUMNS = [
    ("model", "Model"),
    ("paper_top1", "Top-1 (paper)"),
    ("top1", "Top-1 (ours) ± SE"),
    ("paper_top5", "Top-5 (paper)"),
    ("top5", "Top-5 (ours)"),
    ("paper_cache_mb", "Cache MB (paper)"),
    ("cache_mb", "Cache MB (ours)"),
    ("top1_vs_plain", "Top-1 − plain (ours)"),
    ("ran", "What ran"),
]


def load_run(run: RunLike) -> dict:
    """A metrics dict from a dict, a metrics.json path or a run folder."""
    if isinstance(run, dict):
        return run
    path = Path(run)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.json at {path}")
    with open(path) as f:
        m = json.load(f)
    m.setdefault("_path", str(path.parent))
    return m


def _family(model_name: str) -> str:
    return "vit_b16" if model_name.startswith("vit") else "resnet18"


def _iclr_row_id(cfg: dict, table: str) -> str | None:
    model = cfg.get("model", "")
    if model == "deit_mini":  # the CPU stand-in: DeiT-Ti on ImageNet, DeiT-S on CIFAR-100
        model = "deit_tiny" if table == "imagenet" else "deit_small"
    rows = [r for r in ICLR_ROWS if r["dataset"] == table and r["model_name"] == model
            and r["dropit"] == bool(cfg.get("dropit"))]
    exact = [r for r in rows if not r["dropit"] or r["gamma"] == cfg.get("dropit_gamma")]
    return (exact or rows or [{"id": None}])[0]["id"]


def row_id_of(metrics: dict) -> str:
    """The id of the paper row a run stands for (see module docstring)."""
    cfg = metrics.get("config", {})
    if cfg.get("paper_row"):
        return cfg["paper_row"]
    table = "cifar100" if cfg.get("dataset", "cifar100") == "cifar100" else "imagenet"
    if cfg.get("model", "").startswith("deit"):
        found = _iclr_row_id(cfg, table)
        if found:
            return found
    return f"{table}_{_family(cfg.get('model', 'resnet18'))}" + ("_dropit" if cfg.get("dropit") else "")


def describe_run(metrics: dict) -> str:
    """What actually ran, prefixed by the run's label.

    E.g. ``"quick: resnet_mini, 2 epochs, 5000 images, cifar100 32px, DropIT γ=0.9 (mink)"``:
    the facts come from the metrics (epochs completed, images), not from the label.
    """
    cfg = metrics.get("config", {})
    final = metrics.get("final") or {}
    epochs = metrics.get("epochs") or []
    done = final.get("epochs_completed", sum(1 for e in epochs if not e.get("partial")))
    n_img = final.get("train_images")
    size = cfg.get("image_size") or default_image_size(cfg.get("model", ""), cfg.get("dataset", "cifar100"))
    parts = [cfg.get("model", "?"), f"{done} epoch{'s' if done != 1 else ''}"]
    if epochs and epochs[-1].get("partial"):
        parts[-1] += f" + {epochs[-1].get('steps', '?')} steps"
    if n_img is not None:
        parts.append(f"{n_img} images")
    parts.append(f"{cfg.get('dataset', '?')} {size}px")
    if cfg.get("dropit"):
        parts.append(f"DropIT γ={cfg.get('dropit_gamma')} ({cfg.get('dropit_strategy')})")
    if final.get("stopped") or metrics.get("status") == "stopped":
        parts.append("stopped early")
    text = ", ".join(parts)
    label = (cfg.get("label") or "").strip()
    return f"{label}: {text}" if label else text


def build_table(table: str, runs: Iterable[RunLike] = ()) -> list[dict]:
    """Rows of one table ("cifar100", "imagenet" or "iclr") as plain dicts, paper order."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; choose one of {TABLES}")
    by_row: dict[str, dict] = {}
    for run in runs:
        m = load_run(run)
        by_row[row_id_of(m)] = m
    rows = []
    plain = {p["model"]: by_row.get(p["id"]) for p in table_rows(table) if not p["dropit"]}
    for p in table_rows(table):
        m = by_row.get(p["id"])
        final = (m or {}).get("final") or {}
        name = p["model"] + (" w. DropIT" if p["dropit"] else "") + (f" γ={p['gamma']}" if p.get("show_gamma") and p["dropit"] else "")
        rows.append({
            "id": p["id"],
            "table": table,
            "model": name,
            "paper_top1": p["top1"],
            "paper_top5": p["top5"],
            "paper_cache_mb": p["cache_mb"],
            "top1": final.get("top1"),
            "top1_se": _stderr(final.get("top1"), final.get("val_images")),
            "test_images": final.get("val_images"),
            "top5": final.get("top5"),
            "cache_mb": mib(final.get("cache_bytes")),
            "cache_peak_cuda_mb": mib(final.get("cache_peak_cuda_bytes")),  # the paper's protocol, GPU runs only
            "top1_vs_plain": vs_plain(m, plain.get(p["model"])) if p["dropit"] else None,
            "ran": describe_run(m) if m is not None else "not run",
            "run_dir": (m or {}).get("_path") or ((m or {}).get("config") or {}).get("out_dir"),
        })
    return rows


def vs_plain(run: dict | None, plain: dict | None) -> str | None:
    """A DropIT row's top-1 minus its plain row's, by the lab's one rule (:func:`dropit.lab.stats.seed_difference`:
    one run each, so ± their combined binomial errors, and the test named); None unless both finished with a top-1."""
    sides = []
    for m in (run, plain):
        final = (m or {}).get("final") or {}
        if m is None or final.get("top1") is None or not final.get("val_images") or m.get("status") == "stopped":
            return None
        sides.append((((m.get("config") or {}).get("seed", 0)), final["top1"], final["val_images"]))
    (sa, a, na), (sb, b, nb) = sides
    return str(stats.seed_difference({sa: a}, {sb: b}, n_images=min(na, nb))).replace(" points", "")


def build_tables(runs: Iterable[RunLike] = ()) -> dict[str, list[dict]]:
    """All tables: ``{"cifar100": rows, "imagenet": rows, "iclr": rows}``."""
    loaded = [load_run(r) for r in runs]
    return {t: build_table(t, loaded) for t in TABLES}


def _stderr(top1: float | None, n: int | None) -> float | None:
    return stats.top1_stderr(top1, n) if top1 is not None and n else None


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v).replace("|", "\\|")


def to_markdown(rows: list[dict]) -> str:
    """A Markdown table of :func:`build_table` rows."""
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
             "| " + " | ".join("---" if k in ("model", "ran") else "---:" for k, _ in COLUMNS) + " |"]
    for r in rows:
        cells = [_cell(r.get(k)) + (f" ± {r['top1_se']:.2f}" if k == "top1" and r.get("top1_se") is not None else "")
                 for k, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables_markdown(runs: Iterable[RunLike] = ()) -> str:
    """All tables in Markdown with titles and the notes on the sources and the cache columns."""
    tables = build_tables(runs)
    parts = []
    for t in TABLES:
        parts.append(f"### {TABLE_TITLES[t]}\n\n{to_markdown(tables[t])}")
    parts.append(
        "Paper: DropIT, Chen et al., ICLR 2023: the CIFAR-100 and ImageNet-1k tables of arXiv 2202.13808 v1, and the "
        "DeiT table of the ICLR 2023 release's README (top-1 only: it gives no top-5 or cache). Top-1 (ours): ± the "
        "binomial standard error on the run's test images, sqrt(p(1-p)/n); two runs whose top-1s differ by less than "
        "two combined errors cannot be told apart. Cache MB (paper): "
        "CUDA peak of one training forward of 128 images incl. weights; Cache MB (ours): bytes kept for backward by "
        "the DropIT meter."
    )
    return "\n\n".join(parts)
