"""The report: tables.md from runs, a self-contained report.html, figures from notebooks."""
import json

import nbformat
import plotly.graph_objects as go

from dropit.lab.io import write_figure, write_json
from dropit.lab.reproduce import report
from dropit.lab.reproduce.markdown_html import markdown_to_html, write_html
from dropit.lab.reproduce.notebook_outputs import PLOTLY_MIME, notebook_figures
from dropit.lab.paper import PAPER_ROWS


def _run(tmp, name, row, top1, model="resnet_mini", dropit=False):
    m = {"config": {"label": "quick", "paper_row": row, "model": model, "dataset": "cifar100", "dropit": dropit,
                    "dropit_gamma": 0.8, "dropit_strategy": "mink", "image_size": 32},
         "status": "done", "epochs": [{"epoch": 1, "train_loss": 4.0, "val_top1": top1}],
         "final": {"top1": top1, "top5": 2 * top1, "cache_bytes": 10 * 2**20, "epochs_completed": 1, "train_images": 500}}
    write_json(tmp / "runs" / name / "metrics.json", m)


def _cache_rows():
    return [{"table": r["table"], "model": r["model"] + (" w. DropIT" if r["dropit"] else ""), "dropit": r["dropit"],
             "gamma": r["gamma"], "kept_mb": 100.0 + i, "paper_mb": r["cache_mb"], "peak_mb": None}
            for i, r in enumerate(PAPER_ROWS)]


def test_tables_markdown_has_both_tables_paper_numbers_and_labels(tmp_path):
    _run(tmp_path, "a", "cifar100_resnet18", 11.5)
    _run(tmp_path, "b", "cifar100_resnet18_dropit", 12.25, dropit=True)
    write_json(tmp_path / "memory" / "cache_column.json", _cache_rows())
    md = report.tables_markdown(tmp_path, preset="quick")
    for mb in (648, 598, 20290, 16052, 2826, 2600, 16056):
        assert f"| {mb} |" in md
    assert "11.50" in md and "12.25" in md and "quick: resnet_mini" in md
    assert "Quick preset" in md and md.count("not run") == 6 + 8  # and the ICLR table's eight rows
    assert "### ICLR 2023 release: DeiT (timm)" in md and "| DeiT-Ti, ImageNet-1k from scratch w. DropIT γ=0.5 | 72.50 |" in md
    cache_lines = [l for l in md.splitlines() if l.startswith("| CIFAR-100 |") or l.startswith("| ImageNet-1k |")]
    assert len(cache_lines) == 8
    assert md.count("w. DropIT w. DropIT") == 0 and md.count("| ResNet-18 (32x32) w. DropIT | 0.8 |") == 1


def test_markdown_to_html_tables():
    html = markdown_to_html("# T\n\ntext *em* `c`\n\n| a | b |\n| --- | ---: |\n| 1 \\| 2 | <x> |\n")
    assert "<h1>T</h1>" in html and "<em>em</em>" in html and "<code>c</code>" in html
    assert html.count("<tr>") == 2 and "<td style=\"text-align:right\">&lt;x&gt;</td>" in html
    assert "1 | 2" in html


def test_html_is_self_contained(tmp_path):
    fig = go.Figure(go.Bar(x=["a"], y=[1]))
    path = write_html(tmp_path / "r.html", "t", [("S", "| a |\n| --- |\n| 1 |", [fig, fig.to_dict()])])
    text = path.read_text()
    assert "<script src=" not in text  # nothing fetched from a CDN
    assert len(text) > 1_000_000 and "Plotly.newPlot" in text and text.count('class="figure"') == 2


def test_build_collects_notebook_figures(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [nbformat.v4.new_output("display_data", data={PLOTLY_MIME: go.Figure(go.Bar(y=[7, 8])).to_plotly_json()})]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "quickstart.ipynb")
    assert notebook_figures(tmp_path / "quickstart.ipynb")[0]["data"][0]["y"] == [7, 8]
    table = nbformat.v4.new_output("display_data", data={"text/markdown": "| run | top-1 % |\n| --- | ---: |\n| #1 plain | 5.00 |"})
    cell.outputs.append(table)
    nbformat.write(nb, tmp_path / "explore.ipynb")  # the bench's runs table is shown too
    tables, html = report.build(tmp_path)
    assert "not run" in tables.read_text()
    text = html.read_text()
    assert "Figures from quickstart.ipynb" in text and "Figures from explore.ipynb" in text
    assert text.count("<td style=\"text-align:left\">#1 plain</td>") == 1  # explore's table, not quickstart's


def test_write_figure_roundtrip(tmp_path):
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    path = write_figure(tmp_path / "f.plotly.json", fig)
    assert list(go.Figure(json.loads(path.read_text())).data[0].y) == [3, 4]


def _claim_summary(tops: dict[str, list[float]]) -> dict:
    from dropit.lab.claim.summary import summarize

    runs = [{"id": f"cnn-{arm}-seed{s}", "protocol": "cnn", "arm": arm, "seed": s,
             "config": {"model": "resnet_mini", "epochs": 16},
             "epochs": [{"epoch": 16, "val_top1": t}], "final": {"top1": t, "top5": 80.0, "train_loss": 2.0, "test_loss": 1.9}}
            for arm, ts in tops.items() for s, t in enumerate(ts)]
    return summarize(runs)


def test_tables_markdown_shows_the_committed_claim_study_and_the_small_one(tmp_path):
    committed = tmp_path / "committed.json"
    write_json(committed, _claim_summary({"plain": [52.0, 53.0, 51.0], "mink": [52.5, 53.4, 51.6]}))
    write_json(tmp_path / "results" / "claim" / "claim.json", _claim_summary({"plain": [9.0], "mink": [8.0]}))
    full, small = report.claim_sections(tmp_path / "results", committed)
    assert "| cnn: resnet_mini, 16 epochs | DropIT `mink` γ 0.8 | 3 | 52.50 ± 0.90 | +0.50 [+0.25, +0.75] | higher by 0.50 |" in full
    assert "higher by 0.50" in full and "77.96 → 78.17" in full
    assert "pipeline check" in small and "| 9.00 |" in small
    (missing,) = report.claim_sections(tmp_path / "nothing", tmp_path / "absent.json")
    assert "no finished run yet" in missing
    write_json(tmp_path / "mechanism.json", {"rows": [  # beside the committed summary: its table follows the study's
        {"step": 50, "gamma": 0.8, "noise_plain": 0.5, "noise_dropit": 0.4, "bias": 0.1, "bias_rel": 0.3,
         "mse_plain": 0.45, "mse_dropit": 0.41, "exact_norm": 0.3}]})
    full, mechanism, small = report.claim_sections(tmp_path / "results", committed)
    assert "The mechanism (mink)" in mechanism and "| 50 | 0.80 | 0.5 | 0.4 | 0.1 | 30.0% | 0.45 | 0.41 | DropIT |" in mechanism
    rows = json.loads((tmp_path / "mechanism.json").read_text())["rows"]
    write_json(tmp_path / "mechanism_sampled.json", {"rows": [dict(r, strategy="sampled", noise_dropit=0.3) for r in rows]})
    full, mechanism, sampled, small = report.claim_sections(tmp_path / "results", committed)  # every strategy's file
    assert "The mechanism (mink)" in mechanism and "The mechanism (sampled)" in sampled and "| 0.3 |" in sampled
