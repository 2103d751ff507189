"""Widgets without a front end: batched live updates, redraws, and a stop button that stops."""
import os
import time
import types
from pathlib import Path

import pytest

from dropit.lab import teach, widgets

ROOT = Path(__file__).resolve().parents[1]


def _state(**kw):
    return types.SimpleNamespace(epoch=0, step=0, loss=float("nan"), lr=0.1, metrics=[], stop=False, **kw)


def test_live_plot_updates_in_batches_and_per_epoch():
    cb = widgets.LivePlotCallback(every=4)
    st = _state()
    for i in range(1, 4):
        st.step, st.loss = i, 1.0 / i
        cb.on_step(st)
    assert cb.fig.data[0].x in (None, ())  # nothing sent before a batch is full
    st.step, st.loss = 4, 0.25
    cb.on_step(st)
    assert tuple(cb.fig.data[0].x) == (1, 2, 3, 4)
    st.step = 5
    cb.on_step(st)
    st.metrics = [{"epoch": 1, "val_top1": 12.5, "cache_bytes": 3 * 2**20}]
    cb.on_epoch(st)  # flushes the partial batch too
    assert tuple(cb.fig.data[0].x) == (1, 2, 3, 4, 5)
    assert tuple(cb.fig.data[1].y) == (12.5,) and tuple(cb.fig.data[2].y) == (3.0,)
    assert not st.stop
    cb.request_stop()
    cb.on_step(st)
    assert st.stop and cb.stopped_at == 5


def test_live_off_draws_only_at_the_end(monkeypatch):
    monkeypatch.setenv("DROPIT_LIVE_PLOTS", "0")
    cb = widgets.LivePlotCallback(every=1)
    st = _state()
    for i in range(1, 4):
        st.step, st.loss = i, 1.0
        cb.on_step(st)
    st.metrics = [{"epoch": 1, "val_top1": 5.0, "cache_bytes": 2**20}]
    cb.on_epoch(st)
    assert cb.fig.data[0].x in (None, ()) and cb.fig.data[1].x in (None, ())
    cb.on_end(st)
    assert tuple(cb.fig.data[0].x) == (1, 2, 3) and tuple(cb.fig.data[1].y) == (5.0,)


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


def _data_root():
    for p in (os.environ.get("DROPIT_DATA"), ROOT.parent / "shared" / "data", ROOT / "data"):
        if p and (Path(p) / "cifar-100-python" / "train").is_file():
            return str(Path(p).resolve())
    pytest.skip("CIFAR-100 not found (set DROPIT_DATA)")


def test_stop_button_stops_a_run_in_its_thread(tmp_path):
    from dropit.lab.config import load_config

    base = load_config(str(ROOT / "params" / "smoke.yaml"), [
        f"data_dir={_data_root()}", "subset=400", "val_subset=100", "batch_size=20", "cache_batch=4",
        "checkpoint=false", "max_steps=200"])
    panel = widgets.TrainingPanel(base, out_root=tmp_path, every=1)
    panel.run_button.click()
    assert panel.running and panel.run_button.disabled and not panel.stop_button.disabled
    t0 = time.time()
    while len(panel.callback.history["step"]) < 2 and time.time() - t0 < 120:
        time.sleep(0.05)
    panel.stop_button.click()
    result = panel.wait(120)
    assert panel.error is None and result is not None
    assert result["status"] == "stopped"
    assert result["final"]["stopped"] and panel.callback.history["step"][-1] < 20  # one epoch is 20 steps
    assert (Path(result["config"]["out_dir"]) / "metrics.json").is_file()
    assert "stopped" in panel.status.value and not panel.run_button.disabled
