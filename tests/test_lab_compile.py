"""``compile: true`` on the smoke run: the compiled model trains, and the step counter still counts.

Slow (inductor compiles the DropIT-converted ResNet on two cores in one to
three minutes), so it runs the smoke configuration only, for three steps. The
lab does not ask for ``fullgraph``, so that any model trains compiled, but a
DropIT-converted ResNet compiles without a single graph break.
"""
import pytest

from dropit.lab.train.config import load_config
from dropit.lab.train.loop import run
from lab_fakes import ROOT, real_cifar100_root


class StepLog:
    def __init__(self):
        self.losses, self.kept = [], []

    def on_step(self, state):
        self.losses.append(state.loss)
        self.kept.append(state.kept_bytes)


@pytest.mark.slow
def test_smoke_run_compiled(tmp_path):
    runs = {}
    for compiled in (False, True):
        cfg = load_config(str(ROOT / "params" / "smoke.yaml"), [
            f"data_dir={real_cifar100_root()}", f"out_dir={tmp_path / str(compiled)}", f"compile={compiled}",
            "checkpoint=false", "record_every=1", "log_every=1000", "max_steps=3"])
        log = StepLog()
        runs[compiled] = (run(cfg, callbacks=log), log)
    (eager, eager_log), (comp, comp_log) = runs[False], runs[True]
    assert comp["status"] == "done" and comp["final"]["top1"] is not None
    assert comp["config"]["compile"] is True and comp["environment"]["compile"] is True
    assert eager["environment"]["compile"] is False and "compile" not in eager["final"]
    assert comp["final"]["compile"]["graphs"] >= 1  # dynamo compiled something in this run
    assert comp["final"]["compile"]["graph_breaks"] == 0  # the converted model traced whole
    # the same model: the first step's forward (before any update) gives the same loss
    assert comp_log.losses[0] == pytest.approx(eager_log.losses[0], rel=1e-4)
    # AOTAutograd's compiled function saves through autograd too: every step is counted, close to eager's
    assert all(k is not None for k in comp_log.kept) and len(comp["per_step"]) == len(comp_log.kept)
    ratio = comp["final"]["step_kept_bytes"] / eager["final"]["step_kept_bytes"]
    assert 0.8 < ratio < 1.25, ratio
