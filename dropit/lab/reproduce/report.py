"""The results of a reproduction: ``tables.md`` and a self-contained ``report.html``.

    python -m dropit.lab.reproduce.report results     # rebuild both from what is in results/

Inputs, all under the results folder:

- ``runs/[<preset>/]**/metrics.json``    one per table row (the cifar100 / imagenet / iclr notebooks)
- ``memory/cache_column.json``           the Cache (MB) column (the memory notebook)
- ``memory/frontier.json``               the memory/speed frontier (``benchmarks/frontier.py --json``
                                          or the memory notebook)
- ``claim/claim.json``                   the claim notebook's small study (quick preset: a pipeline check)
- ``*.ipynb``                            executed notebooks; their plotly outputs become figures

and, from the repository, the committed accuracy study ``docs/claim/claim.json``
(``make claim``), shown beside the paper's numbers.

``report.html`` embeds plotly.js once, so it opens offline, and holds the tables
and every figure.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from dropit.lab.claim.markdown import claim_markdown, equal_memory_markdown, mechanism_markdown, mechanism_strategies
from dropit.lab.claim.summary import equal_memory_files, mechanism_files
from dropit.lab.io import write_text
from dropit.lab.measure import cache, frontier
from dropit.lab.reproduce import tables
from dropit.lab.reproduce.rows import project_root
from dropit.lab.reproduce.markdown_html import write_html
from dropit.lab.reproduce.notebook_outputs import executed_notebooks, notebook_figures, notebook_markdown

NOTEBOOK_TABLES = ("explore",)  # notebooks whose Markdown outputs the report shows (the others' are in tables.md)


def find_runs(results: Path, preset: str | None = None) -> list[Path]:
    """The run folders holding a metrics.json under ``results/runs/<preset>`` (if it
    exists, as ``reproduce`` writes them), else anywhere under ``results/runs``; sorted."""
    runs = results / "runs"
    if preset is not None and (runs / preset).is_dir():
        runs = runs / preset
    return sorted(p.parent for p in runs.rglob("metrics.json"))


def tables_markdown(results: str | os.PathLike, *, preset: str | None = None) -> str:
    """The whole of ``tables.md``: the three accuracy tables and the Cache (MB) column."""
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
            + cache.markdown(column)
        )
    else:
        parts.append("### Cache (MB) at the paper's protocol\n\nnot run (the memory notebook writes `memory/cache_column.json`).")
    frontier_path = results / "memory" / "frontier.json"
    if frontier_path.is_file():
        parts.append(
            "### Memory against speed: DropIT, its lossy companions, checkpointing\n\n"
            "CPU, fp32, γ = 0.9. Forward-kept and whole-step peak: growth of resident memory, each row a fresh "
            "process; step time: median over interleaved rounds of each step over the plain step of the same "
            "round (quartiles in brackets). `int8`/`int4` are lossy (`to_dropit(quantize=...)`).\n\n"
            + frontier.markdown(json.loads(frontier_path.read_text()))
        )
    parts += claim_sections(results)
    return "\n\n".join(parts) + "\n"


def claim_sections(results: Path, committed: Path | None = None) -> list[str]:
    """The accuracy claim: the committed study's table (``make claim``) and its mechanism measurement, then this
    reproduction's small study."""
    committed = committed or project_root() / "docs" / "claim" / "claim.json"
    out = ["### Does DropIT cost accuracy? The claim study\n\n" + (
        "Full CIFAR-100, arms paired by seed, Student-t 95% intervals on the paired differences, the verdict "
        "computed from them (`docs/claim.md`; rerun with `make claim`).\n\n"
        + claim_markdown(json.loads(committed.read_text())) if committed.is_file()
        else "the study has no finished run yet (`make claim` writes `docs/claim/claim.json`).")]
    for mechanism in mechanism_files(committed.parent):
        doc = json.loads(mechanism.read_text())
        out.append(f"#### The mechanism ({mechanism_strategies(doc['rows'])}): minibatch gradient noise and DropIT's "
                   "bias, against the exact gradient\n\n" + mechanism_markdown(doc))
    for compared in equal_memory_files(committed.parent):
        doc = json.loads(compared.read_text())
        out.append(f"#### Strategies at equal memory ({doc['protocol']}): the bias beside its standard error\n\n"
                   + equal_memory_markdown(doc))
    small = results / "claim" / "claim.json"
    if small.is_file():
        out.append("#### This reproduction's small study (a pipeline check, not evidence)\n\n"
                   + claim_markdown(json.loads(small.read_text())))
    return out


def _is_frontier(fig: dict) -> bool:
    title = (fig.get("layout") or {}).get("title") or {}
    return "vs step time, each against the plain model" in str(title.get("text", title))


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
    for nb in executed_notebooks(results):
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
