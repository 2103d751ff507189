"""The paper's "Cache (MB)" column, reproduced with the memory meter.

    from dropit.lab.measure.cache import cache_column, markdown, per_layer_pair
    rows = cache_column()                        # eight rows, our MiB beside the paper's MB
    markdown(rows)                               # as a table
    per_layer_pair("resnet18_cifar", gamma=0.8)  # where the bytes are, layer by layer, plain and DropIT

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

from dropit.lab.models.catalog import build_model, default_dropit_exclude, default_image_size, dropit_filter
from dropit.lab.paper import PAPER_ROWS, TABLE_TITLES
from dropit.lab.data.datasets import NUM_CLASSES
from dropit.lab.units import MiB



def _model(row: dict, gamma: float | None, strategy: str | None, relu_mask: bool) -> nn.Module:
    model = build_model(row["model_name"], NUM_CLASSES[row["table"]], image_size=row["image_size"])
    if gamma is not None:
        dense = dropit_filter(default_dropit_exclude(model, classifier=False))  # the paper's v1 protocol
        options = {"strategy": strategy} if strategy else {}
        dropit.to_dropit(model, gamma=gamma, module_filter_fn=dense, relu_mask=relu_mask, **options)
    return model


def _measure(model: nn.Module, shape: tuple, device: str | None, seed: int = 0) -> tuple[dropit.CacheReport, str]:
    if device is None:
        return dropit.estimate_cache(model, shape), "meta estimate"
    model.to(device)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
    try:
        return dropit.measure_cache(model.train(), x), f"measured on {device}"
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


def memory_device(choice: str | None = "auto") -> str | None:
    """The ``device`` for this module's functions: "auto" is "cuda" where present, else None (meta estimate)."""
    if choice != "auto":
        return choice
    return "cuda" if torch.cuda.is_available() else None


def per_layer_pair(
    model_name: str,
    *,
    gamma: float = 0.9,
    strategy: str | None = None,
    quantize: str | None = None,
    batch_size: int = 2,
    image_size: int | None = None,
    num_classes: int = 100,
    device: str | None = None,
    paper_protocol: bool = False,
    seed: int = 0,
) -> dict[str, list[dict]]:
    """Per-layer bytes kept for backward by a lab model, plain and with DropIT: ``{"plain": rows, "DropIT γ=...": rows}``.

    The meter's rows of the layers that keep something, ready for
    :func:`dropit.lab.plots.layer_memory_bars`. ``device=None`` estimates on the
    meta device (sizes only, fast at any batch), ``"cpu"``/``"cuda"`` measure one
    forward of seeded random images. DropIT leaves the lab's dense layers alone
    (:func:`~dropit.lab.models.catalog.default_dropit_exclude`: the first layer
    and the classifier; the first only with ``paper_protocol``, as the paper's
    Cache column); ``strategy=None`` is ``to_dropit``'s default, ``quantize``
    adds the lossy companions.
    """
    size = image_size or default_image_size(model_name)
    shape = (batch_size, 3, size, size)
    torch.manual_seed(seed)
    model = build_model(model_name, num_classes, image_size=size)
    plain = _kept_rows(model, shape, device, seed)
    dense = dropit_filter(default_dropit_exclude(model, classifier=not paper_protocol))
    options = {"strategy": strategy} if strategy else {}
    dropit.to_dropit(model, gamma=gamma, quantize=quantize, module_filter_fn=dense, **options)
    label = f"DropIT γ={gamma:g}" + (f" + {quantize}" if quantize else "")
    return {"plain": plain, label: _kept_rows(model, shape, device, seed)}


def paper_per_layer_pair(row: dict, *, batch_size: int = 128, device: str | None = None) -> dict[str, list[dict]]:
    """:func:`per_layer_pair` of one paper row (:data:`~dropit.lab.paper.PAPER_ROWS`) at its protocol."""
    return per_layer_pair(row["model_name"], gamma=row["gamma"], batch_size=batch_size, image_size=row["image_size"],
                          num_classes=NUM_CLASSES[row["table"]], device=device, paper_protocol=True)


def _kept_rows(model: nn.Module, shape: tuple, device: str | None, seed: int) -> list[dict]:
    rows = _measure(model, shape, device, seed)[0].to_rows()
    return [r for r in rows if r["bytes"] or r["dense_bytes"]]


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
