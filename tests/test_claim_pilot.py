"""The throughput pilot: its arithmetic, and a burst of steps on a tiny configuration."""
from pathlib import Path

import pytest

from dropit.lab.claim.pilot import epochs_in_budget, main, step_throughput
from dropit.lab.train.config import RunConfig


def test_epochs_in_budget_counts_training_and_the_test_pass():
    # 50,000 / 500 = 100 s of training and 10,000 / 1000 = 10 s of testing an epoch: 1200 s hold 10.9 epochs
    assert epochs_in_budget(500, 1000, budget_s=1200) == pytest.approx(1200 / 110)
    assert epochs_in_budget(500, 1000, budget_s=1200, eval_every=2) == pytest.approx(1200 / 105)


def test_a_burst_of_steps_reports_positive_rates(capsys):
    cfg = RunConfig(model="resnet_mini", batch_size=8, eval_batch_size=8, dropit=True, dropit_strategy="mink")
    m = step_throughput(cfg, steps=2, warmup=1, threads=1)
    assert m["train_images_per_s"] > 0 and m["eval_images_per_s"] > 0 and m["threads"] == 1
    params = str(Path(__file__).resolve().parents[1] / "params" / "claim_vit.yaml")
    assert main([params, "batch_size=8", "eval_batch_size=8", "--steps", "1", "--threads", "1"]) == 0
    assert "epochs in 20 min" in capsys.readouterr().out
