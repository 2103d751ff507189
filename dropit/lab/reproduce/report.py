"""The results of a reproduction: ``tables.md`` and a self-contained ``report.html``.

    python -m dropit.lab.report results        # rebuild both from what is in results/

Inputs, all under the results folder:

- ``runs/[<preset>/]**/metrics.json``    one per table row (the cifar100 / imagenet / iclr notebooks)
- ``memory/cache_column.json``           the Cache (MB) column (the memory notebook)
- ``memory/frontier.json``               the memory/speed frontier (``benchmarks/frontier.py --json``
                                          or the memory notebook)
- ``**/*.plotly.json``                   plotly figures the notebooks saved
- ``*.ipynb``                            executed notebooks; their plotly outputs become figures

``report.html`` embeds plotly.js once, so it opens offline, and holds the tables
and every figure. Also the small I/O helpers the notebooks use
(:func:`save_json`, :func:`save_figure`) and :func:`cache_markdown`.
"""
from __future__ import annotations

import html
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from dropit.lab.io import write_json, write_text

PLOTLY_MIME = "application/vnd.plotly.v1+json"
NOTEBOOK_ORDER = ("memory", "cifar100", "imagenet", "iclr", "quickstart", "explore")
NOTEBOOK_TABLES = ("explore",)  # notebooks whose Markdown outputs the report shows (the others' are in tables.md)


# ------------------------------------------------------------------ small I/O helpers


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    """:func:`dropit.lab.io.write_json` with the notebooks' argument order (obj, path)."""
    return write_json(path, obj)


def save_figure(fig, directory: str | os.PathLike, name: str) -> Path:
    """Write a plotly figure as ``<directory>/<name>.plotly.json`` (plotly's JSON, reloadable)."""
    return write_text(Path(directory) / f"{name}.plotly.json", fig.to_json())


def unique(items: Iterable) -> list:
    """Items in first-seen order, without repeats."""
    out: list = []
    for x in items:
        if x not in out:
            out.append(x)
    return out


# ------------------------------------------------------------------ tables


def _num(v: Any, digits: int = 0) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def cache_markdown(rows: Sequence[dict]) -> str:
    """The Cache (MB) column (``dropit.lab.measure.cache.cache_column()`` rows) as a Markdown table."""
    from dropit.lab.reproduce.paper import TABLE_TITLES

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


def memory_device(choice: str | None = "auto") -> str | None:
    """The ``device`` for ``dropit.lab.measure.cache``: "auto" is "cuda" where present, else None (meta estimate)."""
    if choice != "auto":
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else None


def per_layer_pair(row: dict, *, batch_size: int = 128, device: str | None = None) -> dict[str, list[dict]]:
    """Per-layer rows of one paper row's model, plain and at the row's γ: ``{label: meter rows}``."""
    from dropit.lab.measure import cache as memory

    common = dict(table=row["table"], batch_size=batch_size, device=device)
    return {
        "plain": memory.per_layer(row["model_name"], **common).to_rows(),
        f"DropIT γ={row['gamma']}": memory.per_layer(row["model_name"], gamma=row["gamma"], **common).to_rows(),
    }


def find_runs(results: Path, preset: str | None = None) -> list[Path]:
    """The run folders holding a metrics.json under ``results/runs/<preset>`` (if it
    exists, as ``reproduce`` writes them), else anywhere under ``results/runs``; sorted."""
    runs = results / "runs"
    if preset is not None and (runs / preset).is_dir():
        runs = runs / preset
    return sorted(p.parent for p in runs.rglob("metrics.json"))


def tables_markdown(results: str | os.PathLike, *, preset: str | None = None) -> str:
    """The whole of ``tables.md``: the three accuracy tables and the Cache (MB) column."""
    from dropit.lab.reproduce import tables

    results = Path(results)
    runs = [tables.load_run(p) for p in find_runs(results, preset)]
    head = ["# DropIT: the paper's tables beside ours", ""]
    if preset == "quick" or any((m.get("config") or {}).get("label") == "quick" for m in runs):
        head += [
            "Quick preset: every row below was trained on two CPU cores in minutes, on a subset and with a smaller "
            "model or resolution where needed; the *What ran* column says what. Its accuracies are not comparable "
            "to the paper's recipes (`python -m dropit.lab.reproduce --preset paper` runs those on GPUs). "
            "To keep the promised wall time, a row that reaches its share of the time budget stops early; each "
            "DropIT row runs first and its plain row then trains for the same number of steps, so each pair is "
            "compared at equal work.",
            "",
        ]
    body = tables.tables_markdown(runs)
    cache_path = results / "memory" / "cache_column.json"
    parts = ["\n".join(head), body]
    if cache_path.is_file():
        column = json.loads(cache_path.read_text())
        parts.append(
            "### Cache (MB) at the paper's protocol\n\n"
            "The four real models at batch 128, fp32, one training-mode forward (no training needed). "
            "Ours: bytes kept for backward, each storage counted once; the paper's: the CUDA allocator's peak "
            "(weights, input and transients included), which we report too where CUDA is present.\n\n"
            + cache_markdown(column)
        )
    else:
        parts.append("### Cache (MB) at the paper's protocol\n\nnot run (the memory notebook writes `memory/cache_column.json`).")
    frontier_path = results / "memory" / "frontier.json"
    if frontier_path.is_file():
        from dropit.lab.measure.frontier import markdown as frontier_markdown

        parts.append(
            "### Memory against speed: DropIT, its lossy companions, checkpointing\n\n"
            "CPU, fp32, γ = 0.9. Forward-kept and whole-step peak: growth of resident memory, each row a fresh "
            "process; step time: median over interleaved rounds of each step over the plain step of the same "
            "round (quartiles in brackets). `int8`/`int4` are lossy (`to_dropit(quantize=...)`).\n\n"
            + frontier_markdown(json.loads(frontier_path.read_text()))
        )
    return "\n\n".join(parts) + "\n"


# ------------------------------------------------------------------ figures


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


def _is_frontier(fig: dict) -> bool:
    title = (fig.get("layout") or {}).get("title") or {}
    return "vs step time, each against the plain model" in str(title.get("text", title))


def _executed_notebooks(results: Path) -> list[Path]:
    found = {p.stem: p for p in results.glob("*.ipynb")}
    order = [n for n in NOTEBOOK_ORDER if n in found] + sorted(n for n in found if n not in NOTEBOOK_ORDER)
    return [found[n] for n in order]


# ------------------------------------------------------------------ HTML


def markdown_to_html(text: str) -> str:
    """HTML for the small Markdown subset the tables use: headings, pipe tables, paragraphs, `code`, *em*."""
    import re

    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
        s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
        s = re.sub(r"\*([^*]+)\*", r"<em>\1</em>", s)
        return s

    def cells(line: str) -> list[str]:
        parts = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        return [p.strip().replace("\\|", "|") for p in parts]

    out, para, lines, i = [], [], text.splitlines(), 0

    def flush():
        if para:
            out.append("<p>" + inline(" ".join(para)) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            flush()
        elif line.startswith("#"):
            flush()
            level = min(len(line) - len(line.lstrip("#")), 6)
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
        elif line.lstrip().startswith("|"):
            flush()
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            head, rows = cells(block[0]), [cells(b) for b in block[2:]]
            aligns = ["right" if c.endswith(":") else "left" for c in cells(block[1])] if len(block) > 1 else []
            t = ["<table><thead><tr>"] + [f"<th>{inline(h)}</th>" for h in head] + ["</tr></thead><tbody>"]
            for r in rows:
                t.append("<tr>" + "".join(
                    f'<td style="text-align:{aligns[j] if j < len(aligns) else "left"}">{inline(c)}</td>' for j, c in enumerate(r)
                ) + "</tr>")
            t.append("</tbody></table>")
            out.append("".join(t))
            continue
        else:
            para.append(line.strip())
        i += 1
    flush()
    return "\n".join(out)


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f3f3f3; }
code { background: #f3f3f3; padding: 0 3px; }
.figure { margin: 1.5em 0; }
.meta { color: #666; font-size: 13px; }
"""


def write_html(path: str | os.PathLike, title: str, sections: Sequence[tuple[str, str, Sequence]]) -> Path:
    """A self-contained HTML page: ``sections`` = (heading, markdown, figures); plotly.js inlined once."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    body = []
    for heading, text, figs in sections:
        if heading:
            body.append(f"<h2>{html.escape(heading)}</h2>")
        if text:
            body.append(markdown_to_html(text))
        for fig in figs:
            body.append('<div class="figure">' + pio.to_html(fig, include_plotlyjs=False, full_html=False, validate=False) + "</div>")
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>\n'
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    return write_text(path, page)


def build(results: str | os.PathLike = "results", *, preset: str | None = None, notes: str = "") -> tuple[Path, Path]:
    """Write ``<results>/tables.md`` and ``<results>/report.html``; returns both paths."""
    results = Path(results)
    md = tables_markdown(results, preset=preset)
    tables_path = write_text(results / "tables.md", md)

    meta = f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} with Python {sys.version.split()[0]}."
    sections: list[tuple[str, str, Sequence]] = [("", md + "\n\n" + meta + ("\n\n" + notes if notes else ""), [])]
    frontier_path = results / "memory" / "frontier.json"
    if frontier_path.is_file():
        from dropit.lab.plots import frontier_figure

        rows = json.loads(frontier_path.read_text())
        sections.append(("Memory against speed", "", [frontier_figure(rows), frontier_figure(rows, memory="peak_ratio")]))
    for nb in _executed_notebooks(results):
        figs = [f for f in notebook_figures(nb) if not _is_frontier(f)]  # drawn from frontier.json above
        text = notebook_markdown(nb) if nb.stem in NOTEBOOK_TABLES else ""
        if figs or text:
            sections.append((f"Figures from {nb.name}", text, figs))
    report_path = write_html(results / "report.html", "DropIT: reproduction report", sections)
    return tables_path, report_path


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", default="results")
    args = ap.parse_args(argv)
    for p in build(args.results):
        print("wrote", p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
