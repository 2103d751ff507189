"""metrics.json's rows (dropit.lab.train.results): built from the loop's state, totals over all epochs."""
import types

import pytest

from dropit.lab.train import results
from dropit.lab.train.metrics import Meter


def _stats(n, train_s, partial=False):
    meter = Meter()
    meter.update(n, loss=2.0 * n, top1=n / 4, top5=n / 2)
    return results.EpochStats(meter, train_s, partial, peak=100, peak_kind="cpu_peak_rss_growth", step_kept_bytes=7)


def test_epoch_rows_and_final_totals():
    state = types.SimpleNamespace(epoch=0, step=4, lr=0.1)
    ev = {"val_loss": 1.5, "val_top1": 30.0, "val_top5": 60.0, "val_images": 50}
    r1 = results.epoch_row(state, _stats(80, 2.0), ev, (1000, None, 16), wall_s=3.0)
    assert (r1["epoch"], r1["train_loss"], r1["train_top1"], r1["val_top1"]) == (1, 2.0, 25.0, 30.0)
    assert r1["images_per_s"] == 40.0 and r1["cache_batch"] == 16 and not r1["partial"]
    state.epoch, state.step = 1, 6
    r2 = results.epoch_row(state, _stats(40, 2.0, partial=True), None, (900, None, 16), wall_s=6.0)
    assert r2["val_top1"] is None and r2["partial"]
    assert results.last_evaluation([r1, r2]) is r1
    final = results.final_block([r1, r2], ev, wall_s=6.5, train_images=160, steps=6, stopped=True,
                                step_times=[0.3, 0.1, 0.2], compile_counts=None)
    assert final["images_per_s"] == pytest.approx(120 / 4.0)  # over both epochs
    assert final["cache_bytes"] == 900 and final["top1"] == 30.0 and final["val_images"] == 50
    assert final["epochs_completed"] == 1 and final["stopped"] and final["step_s_median"] == 0.2
    assert "compile" not in final
    compiled = results.final_block([], {}, wall_s=0.0, train_images=0, steps=0, stopped=False, step_times=[],
                                   compile_counts={"graphs": 1, "graph_breaks": 0})
    assert compiled["compile"] == {"graphs": 1, "graph_breaks": 0} and compiled["images_per_s"] is None


def test_metrics_json_key_order():
    m = results.metrics_json(config={}, status="done", rows=[], per_step=[], final=None, environment={})
    assert list(m) == ["config", "config_sources", "status", "epochs", "per_step", "final", "environment"]
