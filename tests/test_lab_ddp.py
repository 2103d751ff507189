"""Two processes under torchrun (gloo on CPU): sharded data, reduced metrics, one writer."""
import json
import os
import subprocess
import sys

import pytest

from lab_fakes import write_cifar100


@pytest.mark.slow
def test_two_process_run_reduces_metrics_and_writes_once(tmp_path):
    data = tmp_path / "data"
    write_cifar100(data, n_train=160, n_test=101)  # odd test size: no padding duplicates allowed
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "dropit.lab.train", "model=resnet_mini", f"data_dir={data}", f"out_dir={out}",
           "epochs=2", "batch_size=40", "lr=0.05", "dropit=true", "dropit_gamma=0.9", "log_every=1000", "seed=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]

    assert log.count("wrote ") == 1, log  # only rank 0 reports and writes
    files = sorted(p.name for p in out.iterdir())
    assert files == ["checkpoint.pt", "metrics.json"], files
    m = json.loads((out / "metrics.json").read_text())
    assert m["environment"]["world_size"] == 2 and m["environment"]["backend"] == "gloo"
    assert m["final"]["val_images"] == 101  # shards summed exactly: 51 + 50
    for e in m["epochs"]:
        assert e["train_images"] == 160  # per epoch: 2 ranks x 4 steps x 20 images, summed over ranks
    assert [e["steps"] for e in m["epochs"]] == [4, 8]
    assert 0 <= m["final"]["top1"] <= m["final"]["top5"] <= 100
