"""The claim study's runner on a tiny protocol: resume, skipping, determinism, the summary's layout."""
import json

import pytest

from lab_fakes import write_cifar100

from dropit.lab.claim import study as study_mod
from dropit.lab.claim.__main__ import main
from dropit.lab.claim.study import run_study


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("claimdata")
    write_cifar100(root, n_train=200, n_test=100)
    return [f"data_dir={root}", "download=false", "subset=200", "val_subset=100", "batch_size=50",
            "eval_batch_size=50", "epochs=2", "threads=1", "log_every=1000", "cache_batch=10", "record_every=0"]


class StopAfterFirstEpoch:
    """Ends the run whose label contains ``which`` after its first epoch (its checkpoint is written)."""

    def __init__(self, which):
        self.which = which

    def on_epoch(self, state):
        if self.which in state.config.label and state.epoch == 0:
            state.stop = True


class CountSteps:
    def __init__(self):
        self.steps = 0

    def on_step(self, state):
        self.steps += 1


def _metrics(summary):
    return {p: {a: {m: b[m] for m in ("seeds", "top1", "top5", "train_loss", "test_loss")} for a, b in pr["arms"].items()}
            for p, pr in summary["protocols"].items()}


@pytest.mark.slow
def test_an_interrupted_study_finishes_like_an_uninterrupted_one(tiny, tmp_path):
    kw = dict(protocol="cnn", arms=["plain", "mink"], seeds=2, overrides=tiny)
    whole = run_study(tmp_path / "whole", **kw)
    assert whole["runs"] == ["cnn-mink-seed0", "cnn-mink-seed1", "cnn-plain-seed0", "cnn-plain-seed1"]

    cut = tmp_path / "cut"
    part = run_study(cut, callbacks=[StopAfterFirstEpoch("mink seed 0")], **kw)
    assert part["runs"] == ["cnn-plain-seed0"]  # stopped at the second run: nothing after it started
    assert (cut / "work" / "cnn-mink-seed0" / "checkpoint.pt").is_file()
    finished = (cut / "runs" / "cnn-plain-seed0.json").stat().st_mtime_ns
    counter = CountSteps()
    done = run_study(cut, callbacks=[counter], **kw)
    assert (cut / "runs" / "cnn-plain-seed0.json").stat().st_mtime_ns == finished  # skipped
    assert counter.steps == 4 + 8 + 8  # the cut run's second epoch, then two whole runs of 2 epochs x 4 steps
    assert _metrics(done) == _metrics(whole)
    assert json.loads((cut / "claim.json").read_text()) == done
    assert (cut / ".gitignore").read_text() == "work/\n"


@pytest.mark.slow
def test_the_same_seed_gives_the_same_plain_run(tiny, tmp_path):
    a = run_study(tmp_path / "a", protocol="cnn", arms=["plain"], seeds=[3], overrides=tiny)
    b = run_study(tmp_path / "b", protocol="cnn", arms=["plain"], seeds=[3], overrides=tiny)
    ra, rb = (json.loads((tmp_path / d / "runs" / "cnn-plain-seed3.json").read_text()) for d in "ab")
    assert [e["train_loss"] for e in ra["epochs"]] == [e["train_loss"] for e in rb["epochs"]]
    assert _metrics(a) == _metrics(b)
    c = run_study(tmp_path / "c", protocol="cnn", arms=["plain"], seeds=[4], overrides=tiny)
    assert _metrics(c)["cnn"]["plain"]["train_loss"] != _metrics(a)["cnn"]["plain"]["train_loss"]


@pytest.mark.slow
def test_summary_layout_and_the_command_line(tiny, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--protocol", "vit", "--arms", "plain,mink", "--seeds", "2", "--max-steps", "3"]
    assert main(argv + [x for o in tiny for x in ("--set", o)]) == 0
    summary = json.loads((out / "claim.json").read_text())
    mink = summary["protocols"]["vit"]["arms"]["mink"]
    assert mink["seeds"] == [0, 1] and len(mink["top1"]) == 2 and len(mink["test_loss"]) == 2
    d = mink["diff_vs_plain"]["top1"]
    assert set(d) >= {"mean", "ci95_low", "ci95_high", "verdict", "diffs"} and d["ci95_low"] <= d["mean"] <= d["ci95_high"]
    run = json.loads((out / "runs" / "vit-mink-seed1.json").read_text())
    assert run["final"]["steps"] == 3 and run["config"]["dropit_strategy"] == "mink" and run["config"]["dropit_gamma"] == 0.9
    assert "verdict" in capsys.readouterr().out
    assert main(["--out", str(out), "--protocol", "vit", "--arms", "nope"]) == 2
    # the same folder with another recipe: refused, naming what differs, nothing retrained
    assert main(argv[:-2] + ["--max-steps", "4"] + [x for o in tiny for x in ("--set", o)]) == 2
    assert "max_steps: 3 -> 4" in capsys.readouterr().err


def test_the_gpu_protocol_runs_its_pipeline_on_cpu(tiny, tmp_path):
    # bf16 autocast, channels_last and the data on the device, shrunk to resnet_mini and three steps
    summary = run_study(tmp_path / "g", protocol="gpu", seeds=1, overrides=tiny + ["model=resnet_mini", "max_steps=3"])
    assert summary["runs"] == ["gpu-mink-seed0", "gpu-plain-seed0"]
    run = json.loads((tmp_path / "g" / "runs" / "gpu-mink-seed0.json").read_text())
    assert run["config"]["amp"] == "bf16" and run["config"]["channels_last"] and run["config"]["dropit_gamma"] == 0.8


def test_commit_adds_only_the_run_files_and_skips_when_nothing_changed(tiny, tmp_path, monkeypatch):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    monkeypatch.chdir(repo)
    for _ in range(2):  # the second time: every run skipped, nothing new to commit, no error
        run_study("study", protocol="cnn", arms=["plain"], seeds=1, overrides=tiny + ["max_steps=2"], commit=True)
    files = sorted(git("ls-files").split())
    assert files == ["study/.gitignore", "study/claim.json", "study/runs/cnn-plain-seed0.json"]  # no checkpoint
    assert len(git("log", "--oneline").splitlines()) == 2  # the run, then the summary


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["cnn", "vit"])
def test_the_equal_memory_arms_keep_no_more_than_mink_at_their_gamma(protocol):
    from dropit.lab.claim.mechanism import memory_matched_gamma
    from dropit.lab.claim.protocols import ARMS, MEMORY_OF, run_config

    cfg = run_config(protocol, "plain", seed=0, out_dir="unused")
    for arm, mink_gamma in MEMORY_OF.items():
        if arm in ARMS[protocol]:
            settings = ARMS[protocol][arm]
            assert memory_matched_gamma(cfg, settings["dropit_strategy"], mink_gamma) == settings["dropit_gamma"], arm
