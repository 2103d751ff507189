"""What executed notebooks hold for the report: their plotly figures and their Markdown tables."""
from __future__ import annotations

import json
import os
from pathlib import Path

PLOTLY_MIME = "application/vnd.plotly.v1+json"
NOTEBOOK_ORDER = ("memory", "cifar100", "imagenet", "iclr", "quickstart", "explore")


def executed_notebooks(results: Path) -> list[Path]:
    """The ``*.ipynb`` directly under ``results``, in the report's order (then the others by name)."""
    found = {p.stem: p for p in results.glob("*.ipynb")}
    order = [n for n in NOTEBOOK_ORDER if n in found] + sorted(n for n in found if n not in NOTEBOOK_ORDER)
    return [found[n] for n in order]


def notebook_figures(path: str | os.PathLike) -> list[dict]:
    """The plotly figures (as dicts) among the outputs of an executed notebook."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    figs = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if PLOTLY_MIME in data:
                fig = data[PLOTLY_MIME]
                figs.append(json.loads(fig) if isinstance(fig, str) else fig)
    return figs


def notebook_markdown(path: str | os.PathLike) -> str:
    """The Markdown outputs of an executed notebook (its tables), joined."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    texts = [out.get("data", {}).get("text/markdown") for cell in nb.cells for out in cell.get("outputs", [])]
    return "\n\n".join(t if isinstance(t, str) else "".join(t) for t in texts if t)
