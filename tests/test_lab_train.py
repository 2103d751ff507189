"""The training loop: exact resume, callbacks and the stop flag, bad parameters, metrics.json."""
import json
import math

import pytest
import torch

from dropit.lab.train import checkpoint as ckpt
from dropit.lab.train.config import ConfigError, RunConfig
from dropit.lab.train.loop import Schedule, main, run
from lab_fakes import write_cifar100


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar100(root, n_train=160, n_test=100)
    return root


def _cfg(data_root, out, **kw):
    base = dict(model="resnet_mini", dataset="cifar100", data_dir=str(data_root), epochs=3, batch_size=40,
                lr=0.05, schedule="multistep", milestones=[2], lr_gamma=0.5, seed=3, out_dir=str(out),
                log_every=1000, threads=1)
    base.update(kw)
    return RunConfig(**base)


class Interrupt:
    """Raises KeyboardInterrupt at a given step, as a Ctrl-C or a killed job would."""

    def __init__(self, at_step):
        self.at_step = at_step

    def on_step(self, state):
        if state.step == self.at_step:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_resume_after_interruption_equals_uninterrupted_run(data_root, tmp_path):
    # DropIT "random" draws from torch's global RNG, as do the augmentations: resume must restore it
    kw = dict(dropit=True, dropit_strategy="random", dropit_gamma=0.5, record_every=1)
    full = run(_cfg(data_root, tmp_path / "full", **kw))

    cfg = _cfg(data_root, tmp_path / "cut", **kw)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, callbacks=Interrupt(at_step=4 + 2))  # 4 steps per epoch: dies inside epoch 2
    saved = ckpt.load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert saved["epoch"] == 1 and saved["step"] == 4
    assert not list((tmp_path / "cut").glob(".*.tmp"))

    cfg.resume = True
    resumed = run(cfg)
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2, 3]
    for a, b in zip(full["epochs"], resumed["epochs"]):
        assert a["train_loss"] == b["train_loss"] and a["val_top1"] == b["val_top1"] and a["val_loss"] == b["val_loss"]
    assert full["final"]["top1"] == resumed["final"]["top1"]
    untimed = lambda recs: [{k: v for k, v in r.items() if k != "step_s"} for r in recs]  # noqa: E731
    assert [r["step"] for r in resumed["per_step"]] == list(range(1, 13))
    assert untimed(full["per_step"]) == untimed(resumed["per_step"])
    wa = ckpt.load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    wb = ckpt.load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=k)
    # and the run is not trivially reproducible: another seed trains other weights
    other = run(_cfg(data_root, tmp_path / "seed", seed=4, epochs=1, **kw))
    assert other["epochs"][0]["train_loss"] != full["epochs"][0]["train_loss"]


class Recorder:
    def __init__(self, stop_at=None):
        self.steps, self.epochs, self.ended, self.stop_at = [], [], None, stop_at

    def on_step(self, state):
        self.steps.append((state.epoch, state.step, state.loss, state.lr))
        if self.stop_at is not None and state.step >= self.stop_at:
            state.stop = True

    def on_epoch(self, state):
        self.epochs.append(len(state.metrics))

    def on_end(self, state):
        self.ended = state.final


def test_callbacks_see_every_step_and_epoch(data_root, tmp_path):
    rec, only_end = Recorder(), type("E", (), {"on_end": lambda self, s: setattr(self, "f", s.final)})()
    out = run(_cfg(data_root, tmp_path, epochs=2), callbacks=[rec, only_end])
    assert [s[1] for s in rec.steps] == list(range(1, 9))
    assert [s[0] for s in rec.steps] == [0] * 4 + [1] * 4
    assert all(math.isfinite(s[2]) for s in rec.steps)
    assert rec.epochs == [1, 2]
    assert rec.ended == out["final"] == only_end.f
    assert out["status"] == "done" and out["final"]["steps"] == 8


def test_stop_flag_ends_training_cleanly(data_root, tmp_path):
    rec = Recorder(stop_at=3)
    out = run(_cfg(data_root, tmp_path, epochs=5), callbacks=rec)  # a single object works too
    assert len(rec.steps) == 3 and out["final"]["steps"] == 3
    assert out["status"] == "stopped" and out["final"]["stopped"] is True
    assert out["final"]["top1"] is not None  # the stopped model was still evaluated
    assert out["final"]["epochs_completed"] == 0 and out["epochs"][0]["partial"] is True
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["status"] == "stopped" and written["final"]["steps"] == 3
    assert not (tmp_path / "checkpoint.pt").exists()  # no checkpoint of half an epoch
    assert rec.ended is not None


def test_metrics_json_layout(data_root, tmp_path):
    out = run(_cfg(data_root, tmp_path, epochs=1, max_steps=2, label="layout check"))
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m == json.loads(json.dumps(out))
    assert set(m) >= {"config", "epochs", "final", "environment"}
    assert m["config"]["label"] == "layout check" and m["config"]["max_steps"] == 2
    f = m["final"]
    for key in ("top1", "top5", "cache_bytes", "peak_bytes", "images_per_s", "train_loss", "wall_s"):
        assert key in f
    assert 0 <= f["top1"] <= f["top5"] <= 100
    assert f["val_images"] == 100 and f["steps"] == 2
    assert m["epochs"][0]["train_images"] == 80
    assert m["environment"]["torch"] == torch.__version__ and m["environment"]["world_size"] == 1


def test_dropit_is_applied_and_cache_measured(data_root, tmp_path):
    plain = run(_cfg(data_root, tmp_path / "a", epochs=1, max_steps=1, cache_batch=16))
    drop = run(_cfg(data_root, tmp_path / "b", epochs=1, max_steps=1, cache_batch=16, dropit=True, dropit_gamma=0.9))
    import dropit

    if not hasattr(dropit, "measure_cache"):
        pytest.skip("dropit.measure_cache not in the core yet")
    assert 0 < drop["final"]["cache_bytes"] < plain["final"]["cache_bytes"]


def test_bad_parameter_file_is_rejected_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"epochs: 1\nout_dir: {tmp_path / 'out'}\nlearning_rat: 0.1\n")
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert "learning_rat" in err and str(bad) in err and "lr" in err
    assert not (tmp_path / "out").exists()
    assert main([str(tmp_path / "missing.yaml")]) == 2
    with pytest.raises(ConfigError):
        run({"epochs": 1, "optimizer": "lion"})


def test_missing_data_is_reported_by_the_cli(tmp_path, capsys):
    assert main(["model=resnet_mini", f"data_dir={tmp_path}", f"out_dir={tmp_path / 'o'}"]) == 2
    assert str(tmp_path / "cifar-100-python") in capsys.readouterr().err


def test_schedules():
    ms = Schedule(RunConfig(lr=0.1, schedule="multistep", milestones=[2, 4], lr_gamma=0.1, epochs=6), steps_per_epoch=10)
    assert [ms(s) for s in (0, 19, 20, 39, 40, 59)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    cos = Schedule(RunConfig(lr=0.1, schedule="cosine", warmup_epochs=1, epochs=5, min_lr=0.0), steps_per_epoch=10)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(10) == pytest.approx(1.0) and cos(30) == pytest.approx(0.5) and cos(50) == pytest.approx(0.0)
    vals = [cos(s) for s in range(10, 51)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


class StepLog:
    def __init__(self):
        self.steps = []

    def on_step(self, state):
        self.steps.append(dict(step=state.step, kept=state.kept_bytes, top1=state.train_top1, step_s=state.step_s,
                               total=state.total_steps))


@pytest.mark.parametrize("dropit_kw", [{}, dict(dropit=True, dropit_strategy="mink", dropit_gamma=0.9)])
def test_each_step_reports_its_kept_bytes_and_running_top1(data_root, tmp_path, dropit_kw):
    log = StepLog()
    out = run(_cfg(data_root, tmp_path, epochs=1, record_every=2, cache_batch=40, **dropit_kw), callbacks=log)
    epoch = out["epochs"][0]
    assert [s["step"] for s in log.steps] == [1, 2, 3, 4] and {s["total"] for s in log.steps} == {4}
    assert all(s["step_s"] > 0 for s in log.steps)
    # the step's own forward (batch 40) keeps what the meter counts for 40 images: sizes depend on shapes only here
    assert {s["kept"] for s in log.steps} == {epoch["cache_bytes"]}
    assert epoch["step_kept_bytes"] == epoch["cache_bytes"] == out["final"]["step_kept_bytes"]
    assert log.steps[-1]["top1"] == pytest.approx(epoch["train_top1"])  # running top-1 ends at the epoch's
    assert all(0 <= s["top1"] <= 100 for s in log.steps)
    recorded = json.loads((tmp_path / "metrics.json").read_text())["per_step"]
    assert [r["step"] for r in recorded] == [2, 4]
    assert [r["kept_bytes"] for r in recorded] == [log.steps[1]["kept"], log.steps[3]["kept"]]
    assert out["final"]["step_s_median"] > 0


def test_dropit_steps_keep_less_than_plain_steps(data_root, tmp_path):
    logs = {}
    for name, kw in (("plain", {}), ("dropit", dict(dropit=True, dropit_gamma=0.9))):
        logs[name] = StepLog()
        run(_cfg(data_root, tmp_path / name, epochs=1, max_steps=2, cache_batch=4, **kw), callbacks=logs[name])
    plain, drop = ([s["kept"] for s in logs[k].steps] for k in ("plain", "dropit"))
    assert all(d < 0.8 * p for p, d in zip(plain, drop)), (plain, drop)


def test_channels_last_converts_the_model_and_every_batch(data_root, tmp_path):
    class Formats:
        def __init__(self):
            self.inputs, self.losses, self.weights = [], [], None

        def on_step(self, state):
            self.losses.append(state.loss)
            if state.step == 1:
                self.weights = state.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
                state.model.register_forward_pre_hook(
                    lambda m, args: self.inputs.append(args[0].is_contiguous(memory_format=torch.channels_last)))

    seen = {}
    for cl in (False, True):
        seen[cl] = Formats()
        out = run(_cfg(data_root, tmp_path / str(cl), epochs=1, max_steps=2, cache_batch=4, channels_last=cl,
                       dropit=True, dropit_strategy="mink", dropit_gamma=0.8), callbacks=seen[cl])
        assert out["environment"]["channels_last"] is cl and out["config"]["channels_last"] is cl
    assert seen[True].weights is True and seen[False].weights is False
    assert len(seen[True].inputs) >= 3 and all(seen[True].inputs)  # step 2, evaluation and the meter
    assert not any(seen[False].inputs)
    # the same model in another layout: same loss, and after one DropIT step the same weights
    assert seen[True].losses == pytest.approx(seen[False].losses, rel=1e-4)


def test_each_step_keys_the_draws_to_the_seed_and_the_steps_taken_before_it(data_root, tmp_path):
    from dropit import draws

    class Keys:
        def __init__(self):
            self.at_forward, self.after = [], []

        def on_step(self, state):
            self.after.append(tuple(draws._key))
            if state.step == 1:  # from now on, the key each training forward sees
                state.model.register_forward_pre_hook(
                    lambda m, args: self.at_forward.append(tuple(draws._key)) if m.training else None)

    keys = Keys()
    run(_cfg(data_root, tmp_path / "a", epochs=2, max_steps=6, cache_batch=4, dropit=True), callbacks=keys)
    assert keys.after == [(3, step) for step in range(6)]  # seed 3, rank 0; the step count before each step
    assert keys.at_forward[:2] == [(3, 1), (3, 2)]  # set before the forward, not after it


def test_tensor_loader_data_has_no_sampler_and_its_order_follows_the_epoch(data_root, tmp_path):
    from dropit.lab.train.loop import Data, _setup_data
    from dropit.lab.train.runtime import Dist

    cfg = _cfg(data_root, tmp_path, data_on_device=True)
    data = _setup_data(cfg, Dist(cfg))
    assert isinstance(data, Data) and data.sampler is None and data.generator is None
    firsts = []
    for epoch in (0, 1, 0):
        data.set_epoch(epoch, cfg.seed, 0)
        firsts.append(next(iter(data.train_loader))[1])
    assert not torch.equal(firsts[0], firsts[1]) and torch.equal(firsts[0], firsts[2])
    with pytest.raises(ConfigError, match="batch_size 400 exceeds the 160 training images"):
        _setup_data(_cfg(data_root, tmp_path, batch_size=400), Dist(cfg))
    with pytest.raises(ConfigError, match="batch_size 400 exceeds the 160 training images"):
        _setup_data(_cfg(data_root, tmp_path, batch_size=400, data_on_device=True), Dist(cfg))


@pytest.mark.slow
def test_the_loop_reproduces_its_recorded_numbers(tmp_path):
    """tests/train_equivalence.py's single-process runs give what they gave before the loop's refactor,
    bit for bit (metrics.json without timings and paths, weights, what callbacks saw), on the machine that
    recorded them; re-record with ``python tests/train_equivalence.py record`` after a deliberate change."""
    import train_equivalence as eq

    fixture = json.loads((eq.HERE / "data" / "train_equivalence.json").read_text())
    if fixture["machine"] != eq.machine():
        pytest.skip(f"recorded on {fixture['machine']}, this is {eq.machine()}: float results may differ")
    now = eq.single_process(tmp_path)
    diffs = eq.differences(fixture["runs"], now)
    assert not diffs, "\n".join(diffs[:20])


def test_start_up_problems_are_one_list_for_the_trainer_and_the_dry_run(tmp_path):
    from dropit.lab.train.runtime import startup_problems

    cfg = RunConfig(amp="fp16", batch_size=10, out_dir=str(tmp_path))
    assert startup_problems(cfg, torch.device("cpu"), 3) == [
        "amp=fp16 needs CUDA; use amp=bf16 or amp=none on CPU", "batch_size 10 is not divisible by the 3 processes"]
    assert startup_problems(RunConfig(batch_size=12), torch.device("cpu"), 3) == []
    with pytest.raises(ConfigError, match="amp=fp16 needs CUDA"):
        run(RunConfig(amp="fp16", device="cpu", out_dir=str(tmp_path)))
    assert not any(tmp_path.iterdir())  # refused before any work


def test_under_ddp_the_stop_flag_is_all_reduced_every_few_steps_not_every_step():
    from types import SimpleNamespace

    from dropit.lab.train import loop

    trainer = loop.Trainer.__new__(loop.Trainer)  # only what _stop_now reads
    trainer.d, trainer.state, shared = SimpleNamespace(world=2), SimpleNamespace(stop=True), []
    trainer._share_stop = lambda: shared.append(True)
    every = loop.STOP_SHARE_EVERY
    assert every > 1
    assert [trainer._stop_now(s) for s in range(1, 2 * every + 1)] == [s % every == 0 for s in range(1, 2 * every + 1)]
    assert len(shared) == 2  # one all-reduce per STOP_SHARE_EVERY steps
    trainer.d.world = 1
    assert trainer._stop_now(3) and len(shared) == 2  # one process: at once, no communication
