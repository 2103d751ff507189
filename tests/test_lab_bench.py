"""The lab bench's bookkeeping: names from configurations, sweep plans, the runs table, status lines."""
import dataclasses

import pytest

from dropit.lab.notebook import bench
from dropit.lab import plots
from dropit.lab.train.config import ConfigError, RunConfig

MiB = 2**20


def _cfg(**kw):
    return RunConfig(model="resnet_mini", batch_size=32, **kw)


def test_names_say_what_ran():
    assert bench.run_name(_cfg()) == "resnet_mini · plain"
    assert bench.run_name(_cfg(dropit=True, dropit_gamma=0.5, dropit_strategy="sampled")) == "resnet_mini · DropIT γ=0.5 sampled"
    name = bench.run_name(_cfg(dropit=True, dropit_relu_mask=False, dropit_exclude=["conv1"], compile=True, amp="bf16"))
    assert name == "resnet_mini · DropIT γ=0.9 mink exclude=conv1 relu_mask=off · compiled · bf16"
    # DropIT options do not name a plain run
    assert bench.run_name(_cfg(dropit_relu_mask=False, channels_last=True)) == "resnet_mini · plain · channels-last"


def test_an_option_added_to_the_config_later_names_itself():
    # as a quantization level would be: a new dropit_* field with a default
    Later = dataclasses.make_dataclass("Later", [("dropit_quantize", "str | None", dataclasses.field(default=None))],
                                       bases=(RunConfig,))
    cfg = Later(model="vit_tiny", dropit=True, dropit_quantize="int8")
    assert bench.run_name(cfg) == "vit_tiny · DropIT γ=0.9 mink quantize=int8"
    assert bench.run_slug(cfg) == "vit_tiny_cifar100_dropit0.9_mink_quantize=int8"
    assert bench.run_name(Later(model="vit_tiny", dropit=True)) == "vit_tiny · DropIT γ=0.9 mink"


def test_slugs_are_folder_names():
    assert bench.run_slug(_cfg()) == "resnet_mini_cifar100"
    assert bench.run_slug(_cfg(dropit=True, dropit_gamma=0.5)) == "resnet_mini_cifar100_dropit0.5_mink"
    assert "/" not in bench.run_slug(_cfg(dropit=True, dropit_exclude=["layer1/*", "fc"]))


def test_a_sweep_runs_the_plain_model_first():
    plan = bench.sweep_configs(_cfg(dropit=True, dropit_gamma=0.3), [0, 0.5, 0.9], ["mink", "sampled"])
    assert [(c.dropit, c.dropit_gamma if c.dropit else None, c.dropit_strategy if c.dropit else None) for c in plan] == [
        (False, None, None), (True, 0.0, "mink"), (True, 0.5, "mink"), (True, 0.9, "mink"),
        (True, 0.0, "sampled"), (True, 0.5, "sampled"), (True, 0.9, "sampled")]
    assert [c.dropit_strategy for c in bench.sweep_configs(_cfg(dropit_strategy="random"), "0.5")] == ["random", "random"]


@pytest.mark.parametrize("gammas,strategies,match", [
    ("0, 1.2", None, "1.2 is outside"), ("0, x", None, "'x' is not a number"), ([], None, "at least one"),
    ([0.5], ["minK"], "minK"),
])
def test_bad_sweeps_are_rejected_with_the_fix(gammas, strategies, match):
    with pytest.raises(ConfigError, match=match):
        bench.sweep_configs(_cfg(), gammas, strategies)


def _result(top1, kept, status="done", steps=40):
    return {"status": status, "final": {"top1": top1, "top5": top1 + 10, "step_kept_bytes": kept, "cache_bytes": 1,
                                        "step_s_median": 0.05, "images_per_s": 640.0, "wall_s": 10.0,
                                        "startup_s": 2.0, "steps": steps}}


def test_runs_table_rows_and_ratio_to_plain():
    book = bench.RunBook()
    plain = book.add(_cfg())
    drop = book.add(_cfg(dropit=True, dropit_gamma=0.5))
    other = book.add(RunConfig(model="vit_tiny", dropit=True))  # no plain run of its own
    running = book.add(_cfg(dropit=True))
    plain.result, drop.result, other.result = _result(10.0, 20 * MiB), _result(9.5, 12 * MiB, "stopped"), _result(5.0, MiB)
    rows = book.table()
    assert [r["number"] for r in rows] == [1, 2, 3] and running.status == "running"
    p, d, o = rows
    assert p["name"] == "#1 resnet_mini · plain" and p["vs_plain"] == 1.0 and p["kept_mib"] == 20.0
    assert d["vs_plain"] == pytest.approx(0.6) and d["status"] == "stopped" and d["gamma"] == 0.5
    assert o["vs_plain"] is None
    assert p["step_ms"] == pytest.approx(50.0) and p["wall_s"] == 12.0
    md = bench.table_markdown(rows)
    assert md.count("\n") == 4 and "| 0.600 |" in md and "| – |" in md  # vit: no plain reference
    html = bench.table_html(rows)
    assert html.count("class='dropit-run'") == 3 and plain.color in html


def test_colours_differ_per_run_and_are_not_reused_after_clear():
    book = bench.RunBook()
    a, b, c = book.add(_cfg(dropit=True)), book.add(_cfg(dropit=True)), book.add(_cfg())
    assert len({a.color, b.color, c.color}) == 3 and c.color in bench.PLAIN_COLORS
    book.clear()
    d = book.add(_cfg(dropit=True))
    assert d.number == 4 and d.color not in (a.color, b.color) and book.table() == []


def test_kept_bytes_fall_back_to_the_meter():
    book = bench.RunBook()
    run = book.add(_cfg())
    run.result = {"final": {"step_kept_bytes": None, "cache_bytes": 3 * MiB}}
    assert run.kept_bytes == 3 * MiB


def test_progress_line_names_the_run_and_estimates_what_is_left():
    assert bench.remaining_s(1, 40, 0.0) is None  # the first step may be compiling: no pace yet
    assert bench.remaining_s(11, 40, 20.0) == pytest.approx(58.0)  # 2 s a step after the first
    line = bench.progress_line("#2 resnet_mini · DropIT γ=0.5 mink", 11, 40, 25.0, 58.0, (2, 4))
    assert line == "training #2 resnet_mini · DropIT γ=0.5 mink (sweep run 2 of 4): step 11/40, 0:25 elapsed, about 0:58 left"
    assert "/" not in line.split(":")[0]  # a name, not a path
    assert bench.clock(3725) == "1:02:05"


def test_summary_figure_has_a_line_per_strategy_and_the_plain_reference():
    book = bench.RunBook()
    runs = [book.add(c) for c in bench.sweep_configs(_cfg(), [0.5, 0.9], ["mink", "sampled"])]
    for r, (top1, kept) in zip(runs, [(10, 20), (9, 12), (8, 8), (9.5, 12.5), (8.5, 8.5)]):
        r.result = _result(top1, kept * MiB)
    fig = plots.sweep_summary_figure(book.table())
    assert [t.name for t in fig.data] == ["DropIT, mink"] * 2 + ["DropIT, sampled"] * 2
    assert list(fig.data[0].x) == [0.5, 0.9] and list(fig.data[0].y) == [12.0, 8.0] and list(fig.data[1].y) == [9.0, 8.0]
    assert list(fig.data[0].marker.color) == [runs[1].color, runs[2].color]  # the runs' colours
    assert [s.y0 for s in fig.layout.shapes] == [20.0, 10.0]  # the plain run, in both panels
    assert len(plots.sweep_summary_figure([]).data) == 0


def test_bench_figure_adds_four_traces_per_run_in_its_colour():
    fig = plots.bench_figure()
    assert fig.layout.width is None  # the notebook's width
    first = plots.add_run_traces(fig, "#1 a", "#123456")
    second = plots.add_run_traces(fig, "#2 b", "#654321")
    assert first == [0, 1, 2, 3] and second == [4, 5, 6, 7]
    assert {t.line.color for t in fig.data[:4]} == {"#123456"} and [t.showlegend for t in fig.data[:4]] == [True, False, False, False]
    assert [t.xaxis for t in fig.data[:4]] == ["x", "x2", "x2", "x3"]
