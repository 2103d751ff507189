"""The lab side of the lossy companions: per-layer memory with quantize, the memory widget, the frontier figure and report."""
import json

import pytest

import dropit
from dropit.lab import plots
from dropit.lab.io import write_json
from dropit.lab.reproduce import report
from dropit.lab.measure.cache import per_layer_pair
from dropit.lab.notebook import widgets


@pytest.mark.slow
def test_per_layer_memory_with_quantize_estimated_equals_measured():
    for model in ("resnet_mini", "vit_tiny"):
        real = per_layer_pair(model, gamma=0.9, strategy="mink", quantize="int8", batch_size=2, device="cpu")
        meta = per_layer_pair(model, gamma=0.9, strategy="mink", quantize="int8", batch_size=2)
        assert list(real) == ["plain", "DropIT γ=0.9 + int8"]
        for label in real:
            assert {r["name"]: r["bytes"] for r in meta[label]} == {r["name"]: r["bytes"] for r in real[label]}
        plain, quantized = (sum(r["bytes"] for r in rows) for rows in real.values())
        assert quantized < 0.4 * plain


@pytest.mark.slow
def test_memory_explorer_redraws_for_gamma_and_quantize():
    box = widgets.memory_explorer(("resnet_mini", "vit_tiny"), gamma=0.9, quantize=None, batch_size=2, top=10)
    slider, menu = box.controls
    totals = lambda: [fw.layout.title.text for fw in box.figures]  # noqa: E731
    before = totals()
    menu.value = "int4"  # observers redraw
    after = totals()
    assert all("+ int4" in t for t in after) and after != before
    slider.value = 0.5
    assert all("γ=0.5 + int4" in t for t in totals())


ROWS = [
    {"model": "m", "config": c, "batch": 4, "time_batch": 4, "kept_bytes": k * 2**20, "peak_bytes": p * 2**20,
     "kept_ratio": k / 10, "peak_ratio": p / 20, "time_ratio": t, "time_q1": t - 0.01, "time_q3": t + 0.02, "step_s": 1.0}
    for c, k, p, t in [("plain", 10, 20, 1.0), ("DropIT + int8", 2, 12, 1.05), ("checkpoint every block", 3, 15, 1.3)]
]


def test_frontier_figure_has_one_marker_per_configuration():
    fig = plots.frontier_figure(ROWS)
    (trace,) = fig.data
    assert list(trace.text) == [r["config"] for r in ROWS]
    assert list(trace.y) == pytest.approx([1.0, 0.2, 0.3]) and list(trace.x) == [1.0, 1.05, 1.3]
    assert list(plots.frontier_figure(ROWS, memory="peak_ratio").data[0].y) == pytest.approx([1.0, 0.6, 0.75])



def test_frontier_figure_draws_compiled_rows_apart():
    compiled = [{**r, "config": f"compiled {r['config']}", "compiled": True, "time_ratio": 1.1} for r in ROWS]
    eager, comp = plots.frontier_figure(ROWS + compiled).data
    assert (eager.name, comp.name) == ("m", "m, compiled") and comp.marker.symbol == "diamond"
    assert list(comp.text) == [r["config"] for r in compiled] and list(comp.x) == [1.1] * 3

def test_report_shows_the_frontier(tmp_path):
    write_json(tmp_path / "memory" / "frontier.json", ROWS)
    tables, page = report.build(tmp_path)
    md = tables.read_text()
    assert "| m (b4, time b4) | DropIT + int8 | 2.0 | 0.200 | 12.0 | 0.600 | - | 1.050x (1.04-1.07) | - |" in md  # no forward ops recorded: -
    assert "Memory against speed" in page.read_text()
