"""Widgets without a front end: batched live updates, redraws, and a stop button that stops."""
import dataclasses
import time
import types
from pathlib import Path

import pytest

from dropit.lab import plots
from dropit.lab.notebook import teach
from dropit.lab.notebook import widgets
from lab_fakes import ROOT, real_cifar100_root


def _state(**kw):
    return types.SimpleNamespace(epoch=0, step=0, loss=float("nan"), lr=0.1, metrics=[], stop=False,
                                 train_top1=0.0, kept_bytes=None, total_steps=10, **kw)


def _figure(runs=1):
    fig = widgets.go.FigureWidget(plots.bench_figure())
    return fig


class _RunTraces:
    """The figure's run traces, indexed from 0 (the placeholders skipped)."""

    def __init__(self, fig):
        self.fig = fig

    @property
    def data(self):
        return self.fig.data[plots.BENCH_PLACEHOLDERS:]


P = plots.BENCH_PLACEHOLDERS  # the empty bench's one trace per panel come first


def test_live_run_plot_updates_in_batches_and_per_epoch():
    fig = _figure()
    cb = widgets.LiveRunPlot(fig, "#1 run", "#123456", every=4)
    assert len(fig.data) == P + 4
    fig = _RunTraces(fig)
    st = _state()
    for i in range(1, 4):
        st.step, st.loss, st.train_top1, st.kept_bytes = i, 1.0 / i, 10.0 * i, i * 2**20
        cb.on_step(st)
    assert fig.data[0].x in (None, ())  # nothing sent before a batch is full
    st.step, st.loss, st.kept_bytes = 4, 0.25, None  # a step whose bytes could not be counted
    cb.on_step(st)
    assert tuple(fig.data[0].x) == (1, 2, 3, 4) and tuple(fig.data[1].y) == (10.0, 20.0, 30.0, 30.0)
    assert tuple(fig.data[3].y) == (1.0, 2.0, 3.0, None) and cb.kept_counted
    st.step = 5
    cb.on_step(st)
    st.metrics = [{"epoch": 1, "steps": 5, "val_top1": 12.5}]
    st.config = types.SimpleNamespace(val_subset=400)
    cb.on_epoch(st)  # flushes the partial batch too; validation at the epoch's last step
    assert tuple(fig.data[0].x) == (1, 2, 3, 4, 5)
    assert tuple(fig.data[2].x) == (5,) and tuple(fig.data[2].y) == (12.5,)
    assert fig.data[2].error_y.array == pytest.approx((100 * (0.125 * 0.875 / 400) ** 0.5,))  # ± its binomial SE
    assert not st.stop
    cb.request_stop()
    cb.on_step(st)
    assert st.stop and cb.stopped_at == 5
    # a second run adds its own traces and leaves the first one's alone
    widgets.LiveRunPlot(fig.fig, "#2 run", "#654321")
    assert len(fig.fig.data) == P + 8 and len(fig.data[0].x) == 5 and fig.data[4].x in (None, ())


def test_train_top1_is_a_running_mean_that_an_epoch_boundary_does_not_reset():
    cb = widgets.LiveRunPlot(_figure(), "#1 run", "#123456", every=100)
    st = _state()
    # the loop's running top-1 of each epoch over the images seen in it: 10 % of 100, 20 % of 200; then the
    # second epoch starts again at 4 % of 100 images (its first batch), where the loop's line drops to 4
    for step, (top1, images) in enumerate([(10.0, 100), (20.0, 200), (4.0, 100), (12.0, 200)], 1):
        st.step, st.train_top1, st.images = step, top1, images
        cb.on_step(st)
    assert cb.history["train_top1"] == pytest.approx([10.0, 20.0, 100 * (40 + 4) / 300, 100 * (40 + 24) / 400])
    assert min(cb.history["train_top1"][1:]) > 12  # no dive at the boundary
    cb.flush()
    assert list(cb.traces.train_top1.y) == pytest.approx(cb.history["train_top1"])


def test_live_off_draws_only_at_the_end(monkeypatch):
    monkeypatch.setenv("DROPIT_LIVE_PLOTS", "0")
    fig = _figure()
    cb = widgets.LiveRunPlot(fig, "#1 run", "#123456", every=1)
    fig = _RunTraces(fig)
    st = _state()
    for i in range(1, 4):
        st.step, st.loss = i, 1.0
        cb.on_step(st)
    st.metrics = [{"epoch": 1, "steps": 3, "val_top1": 5.0}]
    cb.on_epoch(st)
    assert fig.data[0].x in (None, ()) and fig.data[2].x in (None, ())
    st.final = {"val_images": 10_000}  # the full test set: its size is known at the end
    cb.on_end(st)
    assert tuple(fig.data[0].x) == (1, 2, 3) and tuple(fig.data[2].y) == (5.0,)
    assert fig.data[2].error_y.array == pytest.approx((100 * (0.05 * 0.95 / 10_000) ** 0.5,))


def test_gamma_explorer_redraws_on_change():
    x = teach.demo_activation(batch=1, channels=2, size=8)
    box = widgets.gamma_explorer(x, gamma=0.5)
    heat, hist = box.figures
    slider, strategy = box.controls
    zeros = lambda: sum(v == 0 for row in heat.data[1].z for v in row)
    z50 = zeros()
    slider.value = 0.9
    assert zeros() > z50
    assert len(hist.layout.shapes) == 1
    strategy.value = "random"
    assert len(hist.layout.shapes) == 0  # random has no threshold
    assert "random" in hist.layout.title.text


def _panel(tmp_path, *, max_steps=200, **kw):
    from dropit.lab.train.config import load_config

    base = load_config(str(ROOT / "params" / "smoke.yaml"), [
        f"data_dir={real_cifar100_root()}", "subset=400", "val_subset=100", "batch_size=20", "cache_batch=4",
        "checkpoint=false", f"max_steps={max_steps}", "threads=2", "log_every=1000"])
    return widgets.BenchPanel(base, out_root=tmp_path, every=1, **kw)


def _points(panel, trace):
    """Points of the ``trace``-th run trace (placeholders not counted)."""
    trace += P
    return len(panel.fig.data[trace].x or ()) if len(panel.fig.data) > trace else 0


def _wait_for(predicate, timeout=120):
    t0 = time.time()
    while not predicate() and time.time() - t0 < timeout:
        time.sleep(0.05)
    assert predicate(), "timed out"


def test_stop_button_stops_a_run_in_its_thread(tmp_path):
    panel = _panel(tmp_path)
    panel.run_button.click()
    assert panel.running and panel.run_button.disabled and panel.clear_button.disabled and not panel.stop_button.disabled
    _wait_for(lambda: _points(panel, 0) >= 2)
    # the status follows the steps at most four times a second, so it may lag the figure briefly
    _wait_for(lambda: panel.status.value.startswith("training #1 resnet_mini · DropIT γ=0.9 mink: step "), timeout=30)
    panel.stop_button.click()
    result = panel.wait(120)
    assert panel.error is None and result is not None
    assert result["status"] == "stopped"
    assert result["final"]["stopped"] and result["final"]["steps"] < 20  # one epoch is 20 steps
    assert (Path(result["config"]["out_dir"]) / "metrics.json").is_file()
    assert panel.status.value.startswith("stopped: #1 resnet_mini · DropIT γ=0.9 mink: top-1 ")
    assert str(tmp_path) not in panel.status.value and not panel.run_button.disabled


@pytest.mark.slow
def test_two_runs_side_by_side_fill_the_table(tmp_path):
    panel = _panel(tmp_path / "overlay", max_steps=4)
    panel.run()
    panel.wait()
    first = [tuple(t.x) for t in panel.fig.data]
    panel.dropit.value = False
    panel.run()
    panel.wait()
    assert panel.error is None and len(panel.fig.data) == P + 8
    assert [tuple(t.x) for t in panel.fig.data[:P + 4]] == first  # the first run's traces stay as they were
    assert [t.name for t in panel.fig.data[P::4]] == ["#1 resnet_mini · DropIT γ=0.9 mink", "#2 resnet_mini · plain"]
    assert panel.table.value.count("class='dropit-run'") == 2
    (drop, plain) = panel.book.table()
    assert 0 < drop["kept_vs_plain"] < 1 and plain["kept_vs_plain"] == 1.0  # the DropIT run is compared with the later plain one
    assert drop["top1_vs_plain"] is not None and drop["top1_se"] > 0 and "± " in panel.status.value
    assert sorted(p.name for p in (tmp_path / "overlay").iterdir()) == [
        "01_resnet_mini_cifar100_dropit0.9_mink", "02_resnet_mini_cifar100"]
    assert panel.status.value.startswith("done: #2 resnet_mini · plain: top-1 ")

    replacing = _panel(tmp_path / "replace", max_steps=2, overlay=False)
    replacing.channels_last.value = True  # the checkbox reaches the run
    for _ in range(2):
        replacing.run()
        replacing.wait()
    assert [t.name for t in replacing.fig.data[P::4]] == ["#2 resnet_mini · DropIT γ=0.9 mink · channels-last"]
    assert replacing.result["environment"]["channels_last"] is True
    assert replacing.table.value.count("class='dropit-run'") == 2  # the table still lists both

    panel.clear()
    assert len(panel.fig.data) == P and "dropit-run" not in panel.table.value and panel.book.runs == []
    assert panel.fig.layout.xaxis.autorange is True and panel.fig.layout.uirevision == "bench-1"  # old ranges go
    panel.dropit.value = True
    panel.run()
    panel.wait()
    assert panel.fig.data[P].name == "#1 resnet_mini · DropIT γ=0.9 mink"  # clear starts the numbers again
    assert sorted(p.name for p in (tmp_path / "overlay").iterdir())[-1].startswith("03_")  # no folder overwritten


@pytest.mark.slow
def test_sweep_draws_its_summary_and_stop_skips_the_rest(tmp_path):
    panel = _panel(tmp_path / "sweep", max_steps=3)
    panel.sweep([0.5, 0.9], ["mink"])
    panel.wait()
    assert panel.error is None and panel.summary in panel.widget.children
    assert [r["name"] for r in panel.book.table()] == [
        "#1 resnet_mini · plain", "#2 resnet_mini · DropIT γ=0.5 mink", "#3 resnet_mini · DropIT γ=0.9 mink"]
    (kept, top1, plain_kept, plain_top1) = panel.summary.data
    assert tuple(kept.x) == (0.5, 0.9) and len(panel.summary.layout.shapes) == 3  # plain: two lines and a noise band
    assert tuple(plain_top1.x) == (plots.PLAIN_X,) and len(top1.error_y.array) == 2
    plain_kept = panel.book.table()[0]["kept_mib"]
    assert kept.y[1] < kept.y[0] < plain_kept  # more dropped, less kept, all below plain
    assert panel.status.value.startswith("done: sweep of 3 of 3 runs in ")

    stopping = _panel(tmp_path / "stop", max_steps=200)
    stopping.sweep("0.5, 0.9")
    _wait_for(lambda: _points(stopping, 4) >= 2)
    stopping.stop()
    stopping.wait(120)
    assert [r.status for r in stopping.book.runs] == ["done", "stopped"]  # the third never started
    assert len(list((tmp_path / "stop").iterdir())) == 2
    assert stopping.status.value.startswith("stopped: sweep of 2 of 3 runs in ") and "1 skipped" in stopping.status.value
    stopping.clear()  # no empty "Sweep" panel stays behind
    assert stopping.summary not in stopping.widget.children and stopping.book.runs == []


@pytest.mark.parametrize("listed,said", [("0.5, 2", "sweep γ 2 is outside [0, 1)"), ("0.5, 0.9, 0.5", "sweep γ 0.5 is listed twice"),
                                         ("", "a sweep needs at least one γ"), (" , ", "a sweep needs at least one γ"),
                                         ("-0.5", "sweep γ -0.5 is outside [0, 1)")])
def test_a_bad_sweep_says_why_and_starts_nothing(tmp_path, listed, said):
    panel = _panel(tmp_path)
    panel.sweep_gammas.value = listed
    panel.sweep_button.click()
    assert not panel.running and panel.status.value.startswith(f"cannot sweep: {said}"), panel.status.value
    assert panel.book.runs == [] and not list(tmp_path.iterdir())
    panel.compile.value = True
    assert panel.config().compile is True and panel.base.compile is False


def test_gamma_and_strategy_are_disabled_while_dropit_is_off(tmp_path):
    panel = _panel(tmp_path)
    assert panel.dropit.value and not panel.gamma.disabled and not panel.strategy.disabled
    panel.dropit.value = False
    assert panel.gamma.disabled and panel.strategy.disabled
    panel.dropit.value = True
    assert not panel.gamma.disabled and not panel.strategy.disabled


def test_the_fields_say_what_runs(tmp_path):
    from dropit.lab.train.config import load_config

    panel = widgets.BenchPanel(load_config(str(ROOT / "params" / "explore.yaml")), out_root=tmp_path)
    assert (panel.epochs.value, panel.max_steps.value, panel.seed.value) == (3, 0, 42)  # params/explore.yaml's
    assert panel.schedule.value.startswith("each run trains 150 steps: 3 epochs × 50 (5000 images / batch 100)")
    panel.max_steps.value = 40
    panel.seed.value = 3
    assert "40 steps" in panel.schedule.value and "seed 3" in panel.schedule.value
    assert panel.config().max_steps == 40 and panel.config().seed == 3
    assert panel.sweep_gammas.value == "0.5, 0.9"  # γ 0 is the plain run every sweep starts with


def test_the_empty_bench_has_every_panel(tmp_path):
    panel = _panel(tmp_path)
    assert [t.xaxis for t in panel.fig.data] == ["x", "x2", "x3"] and all(not t.x for t in panel.fig.data)


def test_a_missing_dataset_is_one_escaped_line_with_the_details_folded(tmp_path):
    panel = _panel(tmp_path, max_steps=2)
    panel.dataset.value = "imagenet"  # not in the test data
    panel.base = dataclasses.replace(panel.base, data_dir=str(tmp_path / "no-data"), download=False)
    panel.run()
    panel.wait(60)
    assert panel.error is not None
    status = panel.status.value
    line, details = status.split("<details>")
    assert line.startswith("<span class='dropit-error'>failed: ") and "\n" not in line
    assert "/&lt;class&gt;/*.JPEG" in line and "<class>" not in status  # the path as written, not eaten as a tag
    assert details.startswith("<summary>details</summary><pre>Traceback") and details.endswith("</pre></details>")
    assert "failed" in panel.table.value


def test_fit_width_asks_the_front_end_to_measure_again():
    fig = widgets.go.FigureWidget(plots.bench_figure())
    sent = []
    fig.observe(lambda c: sent.append(c["new"]), names="_py2js_relayout")
    widgets.fit_width(fig, delays=(0.01, 0.02))
    _wait_for(lambda: len([m for m in sent if m]) >= 4, timeout=10)
    edits = [m["relayout_data"] for m in sent if m]
    assert edits == [{"autosize": False}, {"autosize": True}] * 2  # the relayout plotly.js's resize handler sends
    assert fig.layout.autosize is True and fig.layout.width is None
