"""Render the tables of README.md and docs/*.md from the JSON they are made from.

    python docs/make_pages.py              # rewrite every table between markers from its JSON
    python docs/make_pages.py --check      # exit 1, naming each page whose table differs from its JSON
    python docs/make_pages.py wrap frontier results/memory/frontier.json --source "measured ... on ..."
                                           # a benchmark's --json output -> docs/data/frontier.json

A table sits in its page between two markers:

    <!-- table: RENDERER docs/data/NAME.json [docs/data/OTHER.json ...] -->
    | ... generated, do not edit ... |
    <!-- /table -->

RENDERER names one function of :data:`RENDERERS`; the files are read from the
repository root. Each data file is ``{"source": ..., "rows": [...], ...}``:
``rows`` in the shape the benchmark writes or prints (see each renderer's
docstring), ``source`` saying when, where and by what the figures were
measured. Renderers read only the rows and the file's ``labels``; nothing here
measures anything; files are written through the kit's one atomic writer (dropit.lab.io).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from dropit.lab.claim.markdown import claim_markdown, equal_memory_markdown, mechanism_markdown
from dropit.lab.stats import top1_stderr
from dropit.lab.io import write_text  # the kit's one atomic writer
from dropit.lab.units import MiB

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- table: (?P<spec>[^>]*?) -->\n(?P<body>.*?)^<!-- /table -->", re.S | re.M)
OPENING = re.compile(r"^<!-- table: ", re.M)


def table(header: list[str], aligns: str, rows: list[list[str]]) -> str:
    """A Markdown table; ``aligns`` holds one letter per column: l(eft) or r(ight)."""
    rule = ["---" if a == "l" else "---:" for a in aligns]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, rule, *rows])


def mib(n_bytes: float) -> str:
    return f"{n_bytes / MiB:.1f}"


def ratio(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def times(x: float, q1: float | None = None, q3: float | None = None, digits: int = 2) -> str:
    """A step-time ratio, with its quartiles when known: ``1.077x (1.03-1.16)``."""
    return f"{x:.3f}x" + (f" ({q1:.{digits}f}-{q3:.{digits}f})" if q1 is not None else "")


def step(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def sci(x: float) -> str:
    """1.7e-3 rather than Python's 1.7e-03."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def first_of_group(rows: list[dict], key: str) -> list[bool]:
    """True where a row starts a new value of ``key`` (the cell is then written, else left blank)."""
    return [i == 0 or r[key] != rows[i - 1][key] for i, r in enumerate(rows)]


# --- one renderer per table kind ------------------------------------------------------------------------


def render_memory(doc: dict) -> str:
    """benchmarks/memory.py rows: config, variant, growth_bytes, meter_bytes, ratio (growth over plain's)."""
    variants = {"plain": "plain", "dropit": "`to_dropit(model, gamma=0.9)`",
                "+int8": '`to_dropit(model, gamma=0.9, quantize="int8")` (lossy)',
                "+int4": '`to_dropit(model, gamma=0.9, quantize="int4")` (lossy)',
                "published": "published way (no ReLU mask)"}
    rows, new = doc["rows"], first_of_group(doc["rows"], "config")
    return table(["model", "variant", "RSS growth (MiB)", "vs plain", "meter (MiB)", "meter / RSS"], "llrrrr", [
        [doc["labels"][r["config"]] if n else "", variants.get(r["variant"], r["variant"]), mib(r["growth_bytes"]),
         ratio(r["ratio"]), mib(r["meter_bytes"]), ratio(r["meter_bytes"] / r["growth_bytes"])]
        for r, n in zip(rows, new)])


def render_cache_column(doc: dict) -> str:
    """dropit.lab.measure.cache.cache_column() rows: table, model, kept_mb, ratio, paper_mb."""
    return table(["Table", "Model", "kept for backward (MiB)", "vs plain", "paper Cache (MB)"], "llrrr", [
        [r["table"], r["model"], f"{r['kept_mb']:.0f}", ratio(r["ratio"], 2), f"{r['paper_mb']:g}"]
        for r in doc["rows"]])


def render_models(doc: dict) -> str:
    """benchmarks/models.py --json rows: model, config, variant, meter_bytes, rss_growth_bytes and their ratios."""
    rows, new = doc["rows"], first_of_group(doc["rows"], "model")

    def variant(v: str) -> str:
        if v in ("plain", "dropit"):
            return {"plain": "plain", "dropit": "`to_dropit(model, gamma=0.9)`"}[v]
        return f'`quantize="{v.removeprefix("quantize=")}"` (lossy)'

    return table(["model", "configuration", "variant", "kept for backward (MiB)", "vs plain", "RSS growth (MiB)",
                  "vs plain"], "lllrrrr", [
        [doc["labels"][r["model"]] if n else "", r["config"] if n else "", variant(r["variant"]),
         mib(r["meter_bytes"]), ratio(r["meter_ratio"]), mib(r["rss_growth_bytes"]), ratio(r["rss_ratio"])]
        for r, n in zip(rows, new)])


def render_frontier(doc: dict) -> str:
    """dropit.lab.measure.frontier rows: model, config, batch, time_batch, kept/peak bytes and ratios,
    time_ratio with time_q1/time_q3, time_vs_dropit, step_s (the plain row's names the plain step), and where
    measured ``baseline`` ("compiled plain" for compiled rows) and ``forward_ops``. Per model the eager rows
    come first, then the compiled ones; each row's ratios are against its own baseline."""
    models = list(dict.fromkeys(r["model"] for r in doc["rows"]))
    rows = sorted(doc["rows"], key=lambda r: (models.index(r["model"]), bool(r.get("compiled"))))
    with_ops = any("forward_ops" in r for r in rows)
    out = []
    for r, n in zip(rows, first_of_group(rows, "model")):
        model, baseline = "", r.get("baseline", "plain")
        if n:
            plain = next(p for p in rows if p["model"] == r["model"] and p["config"] == "plain")
            model = (f"{doc['labels'][r['model']]}, memory b{r['batch']}, time b{r['time_batch']}"
                     + (f" (plain {step(plain['step_s'])})" if "step_s" in plain else ""))
        quartiles = () if r["config"] == baseline or "time_q1" not in r else (r["time_q1"], r["time_q3"])
        vs_dropit = f"{r['time_vs_dropit']:.3f}x" if "time_vs_dropit" in r else "-"
        ops = [str(r.get("forward_ops", "-"))] if with_ops else []
        out.append([model, r["config"], mib(r["kept_bytes"]), ratio(r["kept_ratio"]), mib(r["peak_bytes"]),
                    ratio(r["peak_ratio"]), times(r["time_ratio"], *quartiles), vs_dropit, *ops])
    head = ["model", "configuration", "forward-kept (MiB)", "vs plain", "step peak (MiB)", "vs plain",
            "step time vs plain", "vs DropIT"] + (["forward convs + matmuls a step"] if with_ops else [])
    return table(head, "llrrrrrr" + ("r" if with_ops else ""), out)


def render_frontier_compiled(doc: dict) -> str:
    """The frontier's compiled rows side by side per model (the README's view of the compiler's budget against
    DropIT): forward-kept and step peak over compiled plain's, step time over compiled plain's with quartiles."""
    models = list(dict.fromkeys(r["model"] for r in doc["rows"] if r.get("compiled")))
    configs = list(dict.fromkeys(r["config"] for r in doc["rows"] if r.get("compiled")))
    found = {(r["model"], r["config"]): r for r in doc["rows"]}
    out = []
    for c in configs:
        cells = [c.removeprefix("compiled ")]
        for m in models:
            r = found.get((m, c))
            quartiles = () if r is None or c == "compiled plain" else (r["time_q1"], r["time_q3"])
            cells += ["-"] * 3 if r is None else [ratio(r["kept_ratio"], 2), ratio(r["peak_ratio"], 2),
                                                   times(r["time_ratio"], *quartiles)]
        out.append(cells)
    head = ["compiled (fullgraph)"] + [f"{doc['labels'][m]}: {what}" for m in models
                                       for what in ("kept", "step peak", "step time")]
    return table(head, "l" + "r" * (3 * len(models)), out)


def render_speed(doc: dict) -> str:
    """benchmarks/speed.py rows, one per model and configuration: model, configuration, step_ms (the plain
    row's), ratio and, where measured, q1/q3; the configurations become columns."""
    configs = list(dict.fromkeys(r["configuration"] for r in doc["rows"] if r["configuration"] != "plain"))
    out = []
    for model in dict.fromkeys(r["model"] for r in doc["rows"]):
        mine = {r["configuration"]: r for r in doc["rows"] if r["model"] == model}
        cells = [doc["labels"][model], f"{mine['plain']['step_ms']:.0f} ms"]
        for c in configs:
            r = mine.get(c)
            cells.append("-" if r is None else times(r["ratio"], r.get("q1"), r.get("q3"), digits=3))
        out.append(cells)
    heads = [doc["labels"].get(c, c) for c in configs]
    return table(["model", "plain", *heads], "l" + "r" * (len(heads) + 1), out)


def render_speed_compiled(doc: dict) -> str:
    """benchmarks/speed.py --compile rows: model, configuration ("plain, compiled" / "default, compiled"),
    step_ms, ratio (against compiled plain), q1/q3; a ``run`` > 1 is a repeat, shown after the first."""
    out = []
    for model in dict.fromkeys(r["model"] for r in doc["rows"]):
        mine = [r for r in doc["rows"] if r["model"] == model]
        plain = next(r for r in mine if r["configuration"] == "plain, compiled")
        runs = sorted((r for r in mine if r["configuration"] == "default, compiled"), key=lambda r: r.get("run", 1))
        cell = "; ".join((times(r["ratio"], r.get("q1"), r.get("q3"), digits=3) if i == 0 else
                          f"another run {r['ratio']:.3f}x") for i, r in enumerate(runs))
        out.append([doc["labels"][model], f"{plain['step_ms']:.0f} ms", cell])
    return table(["model", "plain, compiled", "DropIT, compiled, vs compiled plain"], "lrr", out)


COMPANION_COLUMNS = (("default (sampled)", "eager DropIT"), ("default + int8", "eager + int8"),
                     ("default + int4", "eager + int4"), ("default, compiled", "compiled DropIT"),
                     ("+ int8, compiled", "compiled + int8"), ("+ int4, compiled", "compiled + int4"),
                     ("plain NCHW, compiled", "compiled plain traced NCHW"))


def render_speed_companions(doc: dict) -> str:
    """benchmarks/speed.py --compile --quantize --json rows: per model, each configuration's ratio to its
    reference (eager rows to plain, compiled rows to compiled plain) with quartiles; the plain steps in ms."""
    out = []
    for model in dict.fromkeys(r["model"] for r in doc["rows"]):
        mine = {r["configuration"]: r for r in doc["rows"] if r["model"] == model}
        first = next(iter(mine.values()))
        head = (f"{doc['labels'][model]}, batch {first['batch']} (plain {step(mine['plain']['step_ms'] / 1e3)}, "
                f"compiled {step(mine['plain, compiled']['step_ms'] / 1e3)})")
        out.append([head] + [times(mine[c]["ratio"], mine[c]["q1"], mine[c]["q3"]) if c in mine else "-"
                             for c, _ in COMPANION_COLUMNS])
    return table(["model", *(name for _, name in COMPANION_COLUMNS)], "l" + "r" * len(COMPANION_COLUMNS), out)


def _compiled_time(row: dict, frontier: dict, compiled: dict) -> str:
    """The compiled step over the compiled plain step: the frontier's own ``"compiled <config>"`` row where it
    has one, else (DropIT only) benchmarks/speed.py --compile's first run on the same model."""
    own = [c for c in frontier["rows"] if c["model"] == row["model"] and c["config"] == f"compiled {row['config']}"]
    if own:
        c = own[0]
        return "1.000x" if row["config"] == "plain" else times(c["time_ratio"], c.get("time_q1"), c.get("time_q3"))
    speed = [c for c in compiled["rows"] if c.get("frontier_model") == row["model"]
             and c["configuration"] == "default, compiled" and c.get("run", 1) == 1]
    if speed and row["config"] in ("plain", "DropIT"):
        c = speed[0]
        return "1.000x" if row["config"] == "plain" else times(c["ratio"], c.get("q1"), c.get("q3"))
    return "not measured"


def render_headline(frontier: dict, compiled: dict) -> str:
    """The README's table: the frontier's eager rows (plain, DropIT, + int8, checkpointing) and their
    compiled step time (see :func:`_compiled_time`)."""
    keep = ["plain", "DropIT", "DropIT + int8", "checkpoint every block"]
    rows = [r for r in frontier["rows"] if r["config"] in keep]
    out = []
    for r, n in zip(rows, first_of_group(rows, "model")):
        eager = "1.000x" if r["config"] == "plain" else times(r["time_ratio"], r.get("time_q1"), r.get("time_q3"))
        model = f"{frontier['labels'][r['model']]} (memory b{r['batch']}, time b{r['time_batch']})" if n else ""
        out.append([model, r["config"], ratio(r["kept_ratio"], 2), ratio(r["peak_ratio"], 2), eager,
                    _compiled_time(r, frontier, compiled)])
    return table(["model", "configuration", "kept for backward vs plain", "step peak vs plain",
                  "step time vs plain, eager", "compiled"], "llrrrr", out)


def render_gradients(doc: dict) -> str:
    """benchmarks/gradients.py's first table: strategy, values, rel_error per γ and the change that
    storing the kept values in bf16/fp16 makes (vs_fp32_values)."""
    gammas = list(doc["rows"][0]["rel_error"])
    return table(["strategy", "kept values", *[f"γ = {g}" for g in gammas], "change from fp32 values"],
                 "ll" + "r" * (len(gammas) + 1), [
        [r["strategy"], doc["labels"].get(r["values"], r["values"]), *[f"{r['rel_error'][g]:.3f}" for g in gammas],
         sci(r["vs_fp32_values"]) if r.get("vs_fp32_values") is not None else "-"] for r in doc["rows"]])


def render_gradients_quantize(doc: dict) -> str:
    """benchmarks/gradients.py quantize_table() rows: quantize, gamma, rel_error, cosine, vs_dropit."""
    return table(["quantize", "γ", "rel. error vs dense", "cosine", "change from DropIT alone"], "lrrrr", [
        [r["quantize"] or "-", f"{r['gamma']:.1f}", "0" if r["rel_error"] == 0 else f"{r['rel_error']:.4f}",
         f"{r['cosine']:.4f}", "-" if r["quantize"] is None else f"{r['vs_dropit']:.4f}"] for r in doc["rows"]])


def render_quant_choices(doc: dict) -> str:
    """benchmarks/quant_choices.py rows: op, bits, group, nearest (and stochastic where measured), or op
    and few_bit: the input gradient's relative error for each code; the chosen group in bold. A figure
    given as a string (transcribed with the digits it was printed to) is shown as it is."""
    def fig(v) -> str:
        return v if isinstance(v, str) else f"{v:.4f}"  # benchmarks/quant_choices.py prints 4 decimals

    chosen = {8: 64, 4: 32}
    groups = [(8, 32), (8, 64), (8, 128), (4, 16), (4, 32), (4, 64)]
    out = []
    for op in dict.fromkeys(r["op"] for r in doc["rows"]):
        mine = [r for r in doc["rows"] if r["op"] == op]
        few_bit = next((r["few_bit"] for r in mine if "few_bit" in r), None)
        cells, stochastic = [op], []
        for bits, group in groups:
            r = next(r for r in mine if r.get("bits") == bits and r.get("group") == group)
            best = chosen[bits] == group and not (bits == 4 and few_bit is not None)
            cell = f"**{fig(r['nearest'])}**" if best else fig(r["nearest"])
            if bits == 4 and group == 32 and few_bit is not None:
                cell += f" (few-bit: **{fig(few_bit)}**)"
            cells.append(cell)
            if "stochastic" in r:
                stochastic.append(fig(r["stochastic"]))
        out.append(cells + [", ".join(stochastic)])
    head = [f"int{b}, {g}" for b, g in groups] + ["stochastic int8/64, int4/32"]
    return table(["op", *head], "l" + "r" * len(head), out)


def render_accuracy(doc: dict) -> str:
    """benchmarks/accuracy.py rows: model, run, seed, top1, top5, cache_mib; ± SE from ``n_test`` images."""
    runs = {"plain": "plain", "sampled": 'DropIT (`"sampled"`)', "mink": 'DropIT (`"mink"`)',
            "int8": "DropIT + int8", "int4": "DropIT + int4"}
    rows, new = doc["rows"], first_of_group(doc["rows"], "model")
    return table(["model", "run", "top-1", "± SE", "top-5", "kept for backward (MiB)"], "llrrrr", [
        [r["model"] if n else "", runs.get(r["run"], r["run"]) + (f", seed {r['seed']}" if r.get("seed") else ""),
         f"{r['top1']:.2f}", f"{top1_stderr(r['top1'], doc['n_test']):.2f}", f"{r['top5']:.2f}",
         f"{r['cache_mib']:.1f}"] for r, n in zip(rows, new)])


def render_quick_tables(doc: dict) -> str:
    """make reproduce's quick rows (results/tables.md): row, n_test, plain and dropit [top-1, top-5]."""
    def cell(r: dict, key: str) -> str:
        top1, top5 = r[key]
        return f"{top1:.2f} ± {top1_stderr(top1, r['n_test']):.2f} / {top5:.2f}"

    return table(["row (quick stand-in)", "test images", "plain top-1 ± SE / top-5", "DropIT top-1 ± SE / top-5"],
                 "lrll", [[r["row"], f"{r['n_test']:,}", cell(r, "plain"), cell(r, "dropit")] for r in doc["rows"]])


def render_claim(doc: dict) -> str:
    """docs/claim/claim.json, the accuracy study's summary (``make claim``): its table beside the paper's numbers."""
    return claim_markdown(doc)


def render_mechanism(doc: dict) -> str:
    """docs/claim/mechanism.json: minibatch gradient noise and DropIT's bias per step and gamma."""
    return mechanism_markdown(doc)


def render_equal_memory(doc: dict) -> str:
    """docs/claim/mechanism_equal_memory.json: strategies at equal kept bytes, their bias against its standard error."""
    return equal_memory_markdown(doc)


RENDERERS = {name.removeprefix("render_"): fn for name, fn in list(globals().items()) if name.startswith("render_")}


# --- pages ----------------------------------------------------------------------------------------------


def pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render_spec(spec: str, root: Path) -> str:
    """The table for one marker's ``RENDERER FILE [FILE ...]``."""
    name, *files = spec.split()
    if name not in RENDERERS:
        raise SystemExit(f"unknown table renderer {name!r} in marker '{spec}'; choose from {', '.join(RENDERERS)}")
    if not files:
        raise SystemExit(f"marker '{spec}' names no JSON file; write <!-- table: {name} docs/data/NAME.json -->")
    docs = []
    for f in files:
        path = root / f
        if not path.is_file():
            raise SystemExit(f"marker '{spec}': no file {f} (paths are relative to the repository root)")
        docs.append(json.loads(path.read_text()))
    return RENDERERS[name](*docs)


def rendered(text: str, root: Path, name: str = "page") -> str:
    """``text`` with every marked table replaced by its rendering."""
    if len(OPENING.findall(text)) != len(MARKER.findall(text)):
        raise SystemExit(f"{name}: a '<!-- table: ... -->' line has no '<!-- /table -->' line after it")
    return MARKER.sub(lambda m: f"<!-- table: {m['spec']} -->\n{render_spec(m['spec'], root)}\n<!-- /table -->",
                      text)


def stale_pages(root: Path) -> list[Path]:
    """The pages whose tables differ from what their JSON renders to."""
    return [p for p in pages(root) if p.is_file() and rendered(p.read_text(), root, p.name) != p.read_text()]


def update(root: Path) -> list[Path]:
    """Rewrite the stale pages; returns them."""
    stale = stale_pages(root)
    for p in stale:
        write_text(p, rendered(p.read_text(), root, p.name))
    return stale


def wrap(name: str, raw: Path, source: str, root: Path) -> Path:
    """Put a benchmark's ``--json`` rows into ``docs/data/<name>.json`` with their source; keeps the labels."""
    rows = json.loads(raw.read_text())
    if not isinstance(rows, list):
        raise SystemExit(f"{raw}: expected the list of rows a benchmark's --json writes, got {type(rows).__name__}")
    target = root / "docs" / "data" / f"{name}.json"
    old = json.loads(target.read_text()) if target.is_file() else {}
    doc = {**old, "source": source, "rows": rows}
    write_text(target, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return target


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page's table differs")
    p.add_argument("--root", type=Path, default=ROOT, help="the repository root (default: this checkout)")
    sub = p.add_subparsers(dest="command")
    w = sub.add_parser("wrap", help="a benchmark's --json output -> docs/data/NAME.json")
    w.add_argument("name")
    w.add_argument("raw", type=Path)
    w.add_argument("--source", required=True, help="when, where and with which command it was measured")
    args = p.parse_args(argv)
    if args.command == "wrap":
        print(f"wrote {wrap(args.name, args.raw, args.source, args.root)}; now run python docs/make_pages.py")
        return 0
    if args.check:
        stale = stale_pages(args.root)
        for page in stale:
            print(f"{page.relative_to(args.root)}: a table differs from its JSON; run python docs/make_pages.py")
        return 1 if stale else 0
    for page in update(args.root):
        print(f"updated {page.relative_to(args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
