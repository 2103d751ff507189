"""The paper's "Cache (MB)" column, reproduced with the memory meter.

    from dropit.lab.measure.cache import cache_column, markdown, per_layer
    rows = cache_column()                   # eight rows, our MiB beside the paper's MB
    markdown(rows)                          # as a table
    per_layer("resnet18_cifar", gamma=0.8)  # where the bytes are, layer by layer

Protocol (arXiv 2202.13808 v1): batch 128 of random images, fp32, training-mode
forward only. The paper reported the CUDA allocator's peak (weights + input +
kept tensors + transients); ``kept_mb`` here is what the meter counts as kept
for backward (each storage once, parameters excluded), and ``peak_mb`` the
allocator peak where a GPU is present. Without a GPU the models run on the meta
device: sizes without computing, equal to a real run for ``"mink"`` (a test
checks this), so ViT-B/16 at batch 128 (about 14 GiB kept) is estimated on any
machine. DropIT rows use the paper's rates (0.8 ResNet-18, 0.9 ViT-B/16) and,
as v1 did, convert every convolution and linear layer but the network's first.
"""
from __future__ import annotations

import torch
import torch.nn as nn

import dropit

from dropit.lab.models.catalog import build_model
from dropit.lab.reproduce.paper import PAPER_ROWS, TABLE_TITLES

MiB = 2**20
NUM_CLASSES = {"cifar100": 100, "imagenet": 1000}


def _first_layer(model: nn.Module) -> str:
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return name
    return ""


def _model(row: dict, gamma: float | None, strategy: str | None, relu_mask: bool) -> nn.Module:
    model = build_model(row["model_name"], NUM_CLASSES[row["table"]], image_size=row["image_size"])
    if gamma is not None:
        first = _first_layer(model)
        options = {"strategy": strategy} if strategy else {}
        dropit.to_dropit(
            model, gamma=gamma, module_filter_fn=lambda m, name: name != first, relu_mask=relu_mask, **options
        )
    return model


def _measure(model: nn.Module, shape: tuple, device: str | None) -> tuple[dropit.CacheReport, str]:
    if device is None:
        return dropit.estimate_cache(model, shape), "meta estimate"
    model.to(device)
    x = torch.randn(shape, device=device)
    try:
        return dropit.measure_cache(model, x), f"measured on {device}"
    finally:
        model.to("cpu")


def cache_column(
    *,
    batch_size: int = 128,
    device: str | None = None,
    strategy: str | None = None,
    relu_mask: bool = True,
    rows: list[dict] | None = None,
) -> list[dict]:
    """One dict per paper row: table, model, dropit, gamma, kept_mb, dense_mb, paper_mb, peak_mb, ratio.

    ``device=None`` estimates on the meta device; ``"cuda"`` measures for real
    and adds the allocator peak; ``"cpu"`` measures for real on the CPU (slow
    for the 224x224 models). ``ratio`` is kept_mb over the plain row's.
    """
    out: list[dict] = []
    for row in rows or PAPER_ROWS:
        model = _model(row, row["gamma"] if row["dropit"] else None, strategy, relu_mask)
        shape = (batch_size, 3, row["image_size"], row["image_size"])
        report, method = _measure(model, shape, device)
        out.append(
            {
                "table": row["table"],
                "model": row["model"] + (" w. DropIT" if row["dropit"] else ""),
                "dropit": row["dropit"],
                "gamma": row["gamma"],
                "kept_mb": report.total_bytes / MiB,
                "dense_mb": report.dense_bytes / MiB,
                "peak_mb": None if report.peak_cuda_bytes is None else report.peak_cuda_bytes / MiB,
                "paper_mb": row["cache_mb"],
                "method": method,
                "batch_size": batch_size,
            }
        )
        del model
    for r in out:
        plain = next(p for p in out if p["table"] == r["table"] and not p["dropit"] and p["model"] in r["model"])
        r["ratio"] = r["kept_mb"] / plain["kept_mb"]
    return out


def per_layer(
    model_name: str,
    *,
    gamma: float | None = None,
    table: str = "cifar100",
    batch_size: int = 128,
    image_size: int | None = None,
    strategy: str | None = None,
    device: str | None = None,
) -> dropit.CacheReport:
    """The meter's per-layer report for one model (plain when ``gamma`` is None)."""
    size = image_size or (32 if model_name in ("resnet18_cifar", "resnet_mini") else 224)
    row = {"model_name": model_name, "table": table, "image_size": size}
    model = _model(row, gamma, strategy, relu_mask=True)
    report, _ = _measure(model, (batch_size, 3, size, size), device)
    return report


def memory_device(choice: str | None = "auto") -> str | None:
    """The ``device`` for this module's functions: "auto" is "cuda" where present, else None (meta estimate)."""
    if choice != "auto":
        return choice
    return "cuda" if torch.cuda.is_available() else None


def per_layer_pair(row: dict, *, batch_size: int = 128, device: str | None = None) -> dict[str, list[dict]]:
    """Per-layer rows of one paper row's model, plain and at the row's γ: ``{label: meter rows}``."""
    common = dict(table=row["table"], batch_size=batch_size, device=device)
    return {
        "plain": per_layer(row["model_name"], **common).to_rows(),
        f"DropIT γ={row['gamma']}": per_layer(row["model_name"], gamma=row["gamma"], **common).to_rows(),
    }


def markdown(rows: list[dict]) -> str:
    """The column (:func:`cache_column` rows) as a Markdown table, ours beside the paper's."""
    lines = [
        "| Table | Model | γ | Cache MB (paper) | Kept for backward MB (ours) | vs plain | CUDA peak MB (ours) | How |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        model = str(r.get("model", "?"))
        if r.get("dropit") and "DropIT" not in model:
            model += " w. DropIT"
        lines.append(
            f"| {TABLE_TITLES.get(r.get('table'), r.get('table'))} | {model} | {_num(r.get('gamma'), 1)} | "
            f"{_num(r.get('paper_mb'))} | {_num(r.get('kept_mb'))} | {_num(r.get('ratio'), 2)} | "
            f"{_num(r.get('peak_mb'))} | {r.get('method', '')} |"
        )
    return "\n".join(lines)


def _num(v, digits: int = 0) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)
