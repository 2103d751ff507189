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


def test_the_compilers_memory_budget_names_the_run():
    cfg = _cfg(compile=True, compile_memory_budget=0.2)
    assert bench.run_name(cfg) == "resnet_mini · plain · compiled (budget 0.2)"
    assert bench.run_slug(cfg) == "resnet_mini_cifar100_compiled_budget0.2"
    assert bench.run_slug(_cfg(compile=True)) == "resnet_mini_cifar100_compiled"


def test_a_sweep_runs_the_plain_model_first():
    plan = bench.sweep_configs(_cfg(dropit=True, dropit_gamma=0.3), [0, 0.5, 0.9], ["mink", "sampled"])
    assert [(c.dropit, c.dropit_gamma if c.dropit else None, c.dropit_strategy if c.dropit else None) for c in plan] == [
        (False, None, None), (True, 0.5, "mink"), (True, 0.9, "mink"),
        (True, 0.5, "sampled"), (True, 0.9, "sampled")]  # γ 0 is the plain run: not trained again
    assert [c.dropit_strategy for c in bench.sweep_configs(_cfg(dropit_strategy="random"), "0.5")] == ["random", "random"]


@pytest.mark.parametrize("gammas,strategies,match", [
    ("0, 1.2", None, "1.2 is outside"), ("0, x", None, "'x' is not a number"), ([], None, "at least one"),
    ("", None, "at least one"), ("0.5, 0.9, 0.5", None, "0.5 is listed twice"), ([0.9, 0.90], None, "listed twice"),
    ("-0.1", None, "outside"), ("0", None, "a γ above 0"), ([0.5], ["minK"], "minK"),
])
def test_bad_sweeps_are_rejected_with_the_fix(gammas, strategies, match):
    with pytest.raises(ConfigError, match=match):
        bench.sweep_configs(_cfg(), gammas, strategies)


def _result(top1, kept, status="done", steps=40, val_images=1000):
    return {"status": status, "final": {"top1": top1, "top5": top1 + 10, "step_kept_bytes": kept, "cache_bytes": 1,
                                        "step_s_median": 0.05, "images_per_s": 640.0, "wall_s": 10.0,
                                        "startup_s": 2.0, "steps": steps, "val_images": val_images}}


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
    assert p["name"] == "#1 resnet_mini · plain" and p["kept_vs_plain"] == 1.0 and p["kept_mib"] == 20.0
    assert d["kept_vs_plain"] == pytest.approx(0.6) and d["status"] == "stopped" and d["gamma"] == 0.5
    assert o["kept_vs_plain"] is None and o["top1_vs_plain"] is None
    assert p["step_ms"] == pytest.approx(50.0) and p["wall_s"] == 12.0
    md = bench.table_markdown(rows)
    assert md.count("\n") == 6 and "| 0.600 |" in md and "| – |" in md  # vit: no plain reference
    html = bench.table_html(rows)
    assert html.count("class='dropit-run'") == 3 and plain.color in html


def test_columns_say_what_they_compare():
    titles = [t for _, t, _ in bench.COLUMNS]
    assert "kept vs plain" in titles and "top-1 − plain" in titles and "top-1 % ± SE" in titles
    assert "vs plain" not in titles  # the old, unlabelled memory ratio


def test_every_top1_carries_its_standard_error_and_the_difference_to_plain():
    book = bench.RunBook()
    plain, close, far = book.add(_cfg()), book.add(_cfg(dropit=True, dropit_gamma=0.5)), book.add(_cfg(dropit=True))
    plain.result, close.result, far.result = _result(2.3, 20 * MiB), _result(2.1, 12 * MiB), _result(9.0, 8 * MiB)
    p, c, f = book.table()
    assert p["top1_se"] == pytest.approx(0.474, abs=1e-3) and p["test_images"] == 1000
    assert p["top1_vs_plain"] is None  # the reference is not compared with itself
    assert c["top1_vs_plain"] == pytest.approx(-0.2) and c["within_noise"] is True
    assert f["top1_vs_plain"] == pytest.approx(6.7) and f["within_noise"] is False
    assert bench.top1_cell(p) == "2.30 ± 0.47"
    assert bench.vs_plain_cell(c) == "-0.20 ± 0.66 (one seed each, binomial SEs), within noise at 1000 test images"
    assert bench.vs_plain_cell(f) == "+6.70 ± 1.02 (one seed each, binomial SEs)"
    html = bench.table_html(book.table())
    assert html.count("class='dropit-noise'") == 1 and "within noise at 1000 test images" in html
    assert "within noise at 1000 test images" in bench.table_markdown(book.table())


def test_a_comparison_needs_the_same_recipe():
    book = bench.RunBook()
    plain, longer = book.add(_cfg(epochs=1)), book.add(_cfg(dropit=True, epochs=3))
    plain.result, longer.result = _result(2.3, MiB), _result(9.0, MiB)
    assert book.table()[1]["top1_vs_plain"] is None  # trained three times as long: no like-for-like plain run


def test_seeds_are_one_estimate_with_their_spread():
    book = bench.RunBook()
    runs = [book.add(c) for c in bench.sweep_configs(_cfg(seed=7), [0.9], seeds=3)]
    assert [(r.config.dropit, r.config.seed) for r in runs] == [(False, 7), (False, 8), (False, 9), (True, 7), (True, 8), (True, 9)]
    for r, top1 in zip(runs, [10.0, 12.0, 14.0, 11.0, 11.0, 11.0]):
        r.result = _result(top1, MiB, val_images=10_000)
    rows = book.table()
    assert [r["seeds"] for r in rows] == [3] * 6 and bench.seeds_cell(rows[0]) == "3 (seeds 7, 8, 9)"
    assert book.plain_estimate(runs[3]).error == pytest.approx(2.0)  # the plain seeds' spread, not their SE
    drop = rows[3]
    # paired by seed: differences +1, -1, -3 -> mean -1, sd 2, SE 2/sqrt(3); t(0.975, 2) = 4.303
    assert drop["top1_vs_plain"] == pytest.approx(-1.0) and drop["within_noise"] and drop["paired"]
    assert drop["top1_vs_plain_err"] == pytest.approx(2 / 3 ** 0.5)
    assert drop["ci95"] == pytest.approx((-1 - 4.3027 * 2 / 3 ** 0.5, -1 + 4.3027 * 2 / 3 ** 0.5), abs=1e-3)
    assert "paired by seed over 3 seeds, Student-t 95%" in bench.vs_plain_cell(drop)
    with pytest.raises(ConfigError, match="seeds"):
        bench.with_seeds(_cfg(), 0)


def test_colours_differ_per_run_and_clear_starts_the_numbers_again():
    book = bench.RunBook()
    a, b, c = book.add(_cfg(dropit=True)), book.add(_cfg(dropit=True)), book.add(_cfg())
    assert len({a.color, b.color, c.color}) == 3 and c.color in bench.PLAIN_COLORS
    book.clear()
    d = book.add(_cfg(dropit=True))
    assert d.number == 1 and d.name.startswith("#1 ") and d.color == a.color and book.table() == []


def test_status_lines_for_a_finished_run_a_short_run_and_an_error():
    book = bench.RunBook()
    plain, drop = book.add(_cfg()), book.add(_cfg(dropit=True))
    plain.result, drop.result = _result(2.3, 20 * MiB), _result(2.1, 4 * MiB)
    line = bench.finished_line(book, drop)
    assert line.startswith("done: #2 resnet_mini · DropIT γ=0.9 mink: top-1 2.10 ± 0.45% on 1000 test images, "
                           "-0.20 ± 0.66 points vs plain (one seed each, binomial SEs), within noise at 1000 test images, "
                           "kept 4.00 MiB per step (0.20 of plain)")
    assert "Too short to compare" in line  # 2% after a few steps: cannot be told from a broken companion
    trained = book.add(_cfg(dropit=True, dropit_gamma=0.5))
    trained.result = _result(9.5, 4 * MiB, val_images=2000)
    assert "too short" not in bench.finished_line(book, trained).lower()
    sweep = bench.sweep_line(book, [plain, drop], 2, 70.0)
    assert sweep.startswith("done: sweep of 2 of 2 runs in 1:10; 1 of 1 DropIT runs' top-1 within noise of plain at 1000 test images")
    err = bench.error_html(FileNotFoundError("CIFAR-100 not found at data/<root>/cifar-100-python\nsecond line"),
                           "Traceback (most recent call last):\n  <frame>\nFileNotFoundError: ...")
    first, rest = err.split("<details>")
    assert first == "<span class='dropit-error'>failed: FileNotFoundError: CIFAR-100 not found at data/&lt;root&gt;/cifar-100-python</span>"
    assert rest.startswith("<summary>details</summary><pre>Traceback") and "&lt;frame&gt;" in rest and "<frame>" not in err


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
        r.result = _result(top1, kept * MiB, val_images=10_000)
    fig = plots.sweep_summary_figure(book.table())
    assert [t.name for t in fig.data] == ["DropIT, mink"] * 2 + ["DropIT, sampled"] * 2 + ["plain (#1)"] * 2
    assert list(fig.data[0].x) == [0.5, 0.9] and list(fig.data[0].y) == [12.0, 8.0] and list(fig.data[1].y) == [9.0, 8.0]
    assert list(fig.data[0].marker.color) == [runs[1].color, runs[2].color]  # the runs' colours
    # the top-1 points carry their binomial SE; the kept panel has no bars
    assert fig.data[1].error_y.array == pytest.approx([100 * (0.09 * 0.91 / 10_000) ** 0.5, 100 * (0.08 * 0.92 / 10_000) ** 0.5])
    assert fig.data[0].error_y.array is None
    # plain stands apart from γ = 0: its own square left of the axis's 0, a dashed line, a noise band
    plain_kept, plain_top1 = fig.data[4:]
    assert list(plain_top1.x) == [plots.PLAIN_X] and plots.PLAIN_X < 0 and list(plain_top1.marker.symbol) == ["square"]
    assert [s.y0 for s in fig.layout.shapes if s.type == "line"] == [20.0, 10.0]
    (band,) = [s for s in fig.layout.shapes if s.type == "rect"]
    assert band.y0 == pytest.approx(10 - 2 * 0.3) and band.y1 == pytest.approx(10 + 2 * 0.3)
    assert fig.data[1].mode == "lines+markers"  # 1 to 2 points below plain at 10,000 images: a trend worth a line
    empty = plots.sweep_summary_figure([])
    assert {t.xaxis for t in empty.data} == {"x", "x2"} and all(len(t.x) == 0 for t in empty.data)  # both panels laid out


def test_summary_figure_marks_points_within_noise_instead_of_drawing_a_trend():
    # the issue's case: the smoke recipe's 2.3 -> 2.2 -> 2.1 on 1000 test images
    book = bench.RunBook()
    runs = [book.add(c) for c in bench.sweep_configs(_cfg(), [0.3, 0.5, 0.9])]
    for r, top1 in zip(runs, [2.3, 2.3, 2.2, 2.1]):
        r.result = _result(top1, 10 * MiB)
    fig = plots.sweep_summary_figure(book.table())
    kept, top1 = fig.data[0], fig.data[1]
    assert kept.mode == "lines+markers" and top1.mode == "markers"  # no line drawn through noise
    assert set(top1.marker.symbol) == {"circle-open"}
    (note,) = fig.layout.annotations[2:]  # after the two panel titles
    assert note.text == "every γ within noise at 1000 test images: no trend to read"
    # one point clear of the noise: the line comes back and only the noisy points are open
    runs[3].result = _result(6.0, 10 * MiB)
    fig = plots.sweep_summary_figure(book.table())
    assert fig.data[1].mode == "lines+markers" and list(fig.data[1].marker.symbol) == ["circle-open"] * 2 + ["circle"]
    assert fig.layout.annotations[-1].text == "open markers: within noise at 1000 test images"


def test_summary_figure_shows_the_spread_of_repeated_seeds():
    book = bench.RunBook()
    runs = [book.add(c) for c in bench.sweep_configs(_cfg(), [0.9], seeds=3)]
    for r, top1 in zip(runs, [20, 20, 20, 15, 17, 19]):
        r.result = _result(top1, MiB, val_images=10_000)
    fig = plots.sweep_summary_figure(book.table())
    top1 = fig.data[1]
    assert list(top1.y) == [17.0] and top1.error_y.array == pytest.approx([2.0])  # the seeds' sd, not the SE of 0.38
    assert top1.text[0].endswith("(+2 seeds)")


def test_bench_figure_lays_out_every_panel_and_owns_each_runs_four_traces_in_its_colour():
    bf = plots.BenchFigure()
    fig = bf.fig
    assert fig.layout.width is None  # the notebook's width
    assert [t.xaxis for t in fig.data] == ["x", "x2", "x3"] and all(len(t.x) == 0 for t in fig.data)
    first = bf.add_run("#1 a", "#123456")
    second = bf.add_run("#2 b", "#654321")
    assert [first.loss.meta["series"], first.train_top1.meta["series"], first.val_top1.meta["series"],
            first.kept_mib.meta["series"]] == list(plots.RUN_TRACES)
    assert {first.loss.line.color, first.kept_mib.line.color} == {"#123456"} and second.loss.line.color == "#654321"
    assert [first.loss.showlegend, first.train_top1.showlegend] == [True, False]
    assert [t.xaxis for t in (first.loss, first.train_top1, first.val_top1, first.kept_mib)] == ["x", "x2", "x2", "x3"]
    assert first.val_top1.error_y.type == "data"  # validation top-1 carries its SE
    first.show({"step": [1, 2], "loss": [4.6, 4.5], "train_top1": [1.0, 2.0], "kept_mib": [3.0, 3.0],
                "val_step": [2], "val_top1": [2.5], "val_se": [0.4]})
    assert list(fig.data[3].y) == [4.6, 4.5] and list(second.loss.y) == []  # its own traces, the other run's untouched
    fig.update_xaxes(range=[0, 300], autorange=False)  # as a zoom leaves it
    bf.clear()
    assert len(fig.data) == 3 and bf.runs == {} and fig.layout.xaxis.autorange is True and fig.layout.uirevision == "bench-1"


def _explore(**kw):
    """params/explore.yaml's recipe: 3 epochs of 50 steps, 2000 test images."""
    return RunConfig(**{**dict(model="resnet_mini", subset=5000, batch_size=100, epochs=3, val_subset=2000, dropit=True,
                              dropit_gamma=0.9, dropit_strategy="mink", seed=0), **kw})


def _replay_issue_32():
    """Issue 32's sequence: run (γ 0.9 mink, seed 0), sweep 0, 0.5, 0.9 (the same seed again), run and stop at 51."""
    book = bench.RunBook()
    first = book.add(_explore())
    first.result = _result(8.20, 4 * MiB, steps=150, val_images=2000)
    sweep = [book.add(c) for c in bench.sweep_configs(_explore(), "0, 0.5, 0.9")]
    assert [r.name.split(" · ", 1)[1] for r in sweep] == ["plain", "DropIT γ=0.5 mink", "DropIT γ=0.9 mink"]
    for r, top1 in zip(sweep, [9.35, 8.70, 8.20]):
        r.result = _result(top1, 4 * MiB, steps=150, val_images=2000)
    stopped = book.add(_explore())
    stopped.result = _result(3.85, 4 * MiB, status="stopped", steps=51, val_images=2000)
    return book, first, sweep, stopped


def test_issue_32_a_rerun_and_a_stopped_run_are_never_pooled():
    book, first, sweep, stopped = _replay_issue_32()
    rows = {r["number"]: r for r in book.table()}
    one = rows[first.number]
    assert one["seeds"] == 1 and one["seed_list"] == [0] and not one["paired"]
    assert one["top1_vs_plain"] == pytest.approx(-1.15) and one["top1_vs_plain_err"] == pytest.approx(0.894, abs=1e-3)
    assert bench.vs_plain_cell(one) == "-1.15 ± 0.89 (one seed each, binomial SEs), within noise at 2000 test images"
    assert bench.seeds_cell(one) == "1 (seed 0)"
    # the sweep's γ 0.9 run repeats run #1's seed: a rerun, pointed to, not a second seed
    rerun = rows[sweep[2].number]
    assert rerun["rerun_of"] == 1 and not rerun["rerun_differs"] and rerun["seeds"] == 1
    assert bench.seeds_cell(rerun) == "rerun of #1 (seed 0): not pooled, same top-1"
    assert bench.vs_plain_cell(rerun) == "as #1 (a rerun is not a seed)"
    # the stopped run: its own top-1 ± SE and step count, no verdict, not pooled
    cut = rows[stopped.number]
    assert cut["top1"] == 3.85 and cut["top1_se"] == pytest.approx(0.430, abs=1e-3)
    assert cut["top1_vs_plain"] is None and cut["within_noise"] is None and cut["seeds"] == 0
    assert bench.seeds_cell(cut) == "stopped at step 51/150: not pooled"
    assert bench.vs_plain_cell(cut) == "– (stopped: no verdict)"
    line = bench.finished_line(book, stopped)
    assert "stopped at step 51/150: not pooled; no verdict" in line and "vs plain" not in line
    assert "mean of" not in bench.table_markdown(book.table()) and "-2.60" not in bench.table_markdown(book.table())
    # the estimate behind every row of the recipe is run #1's alone
    assert book.top1_estimate(stopped).seeds == 1 and book.top1_estimate(stopped).value == 8.20


def test_a_rerun_that_differs_is_flagged_and_distinct_seeds_pair():
    book, first, sweep, _ = _replay_issue_32()
    sweep[2].result = _result(8.10, 4 * MiB, steps=150, val_images=2000)  # same seed, another top-1
    row = book.row(sweep[2])
    assert row["rerun_differs"] and bench.seeds_cell(row) == "rerun of #1 (seed 0): not pooled, differs: 8.20 there"
    # a plain and a DropIT run at seeds 1 and 2: three shared seeds, paired by seed
    for seed, (p, d) in zip((1, 2), ((9.0, 8.5), (9.6, 8.4))):
        book.add(dataclasses.replace(_explore(), dropit=False, seed=seed)).result = _result(p, MiB, steps=150, val_images=2000)
        book.add(_explore(seed=seed)).result = _result(d, MiB, steps=150, val_images=2000)
    row = book.row(first)
    assert row["seeds"] == 3 and row["plain_seeds"] == 3 and row["paired"]
    assert row["top1_vs_plain"] == pytest.approx(((8.2 - 9.35) + (8.5 - 9.0) + (8.4 - 9.6)) / 3)
    assert row["test"] == "paired by seed over 3 seeds, Student-t 95%"


def test_the_schedule_says_what_runs():
    cfg = _explore()
    assert bench.steps_per_epoch(cfg) == 50 and bench.planned_steps(cfg) == 150
    assert bench.schedule_words(cfg) == "150 steps: 3 epochs × 50 (5000 images / batch 100); test on 2000 test images; seed 0"
    assert bench.planned_steps(dataclasses.replace(cfg, max_steps=40)) == 40
    assert "cut at max steps 40" in bench.schedule_words(dataclasses.replace(cfg, max_steps=40))
    assert bench.planned_steps(dataclasses.replace(cfg, subset=None)) == 3 * 500  # all 50,000 CIFAR-100 images


def test_the_sweep_summary_draws_a_rerun_at_its_seeds_estimate():
    book, first, sweep, _ = _replay_issue_32()
    rows = [r for r in book.table() if r["number"] in {s.number for s in sweep}]  # the sweep's runs only
    fig = plots.sweep_summary_figure(rows)
    top1 = fig.data[1]
    assert list(top1.x) == [0.5, 0.9] and list(top1.y) == pytest.approx([8.70, 8.20])  # γ 0.9: run #1's seed, once
    assert top1.error_y.array[1] == pytest.approx(100 * (0.082 * 0.918 / 2000) ** 0.5)  # one seed: its binomial SE
    assert not top1.text[1].endswith("seeds)")  # not "(+1 seeds)": the rerun is no second seed
