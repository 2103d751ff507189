"""The fine-tuning and schedule-length protocols: class split, source checkpoint, fresh head, checks before training."""
import json

import pytest
import torch

from lab_fakes import write_cifar100

from dropit.lab.claim import source as source_mod
from dropit.lab.claim.protocols import SCHEDULES, run_config
from dropit.lab.claim.source import check_disjoint, check_source, ensure_source
from dropit.lab.claim.study import run_one, run_study
from dropit.lab.data.datasets import build_datasets, class_range
from dropit.lab.models.catalog import build_model, classifier_name
from dropit.lab.train.config import ConfigError, RunConfig, validate
from dropit.lab.train.optim import Schedule, build_optimizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ftdata")
    write_cifar100(root, n_train=400, n_test=200)
    return [f"data_dir={root}", "download=false", "batch_size=50", "eval_batch_size=50", "epochs=1", "threads=1",
            "log_every=1000", "cache_batch=10", "record_every=0", "data_on_device=false"]


class CountSteps:
    def __init__(self, which):
        self.which, self.steps = which, 0

    def on_step(self, state):
        self.steps += self.which in state.config.label


def test_the_class_split_is_disjoint_and_relabelled(tiny):
    data_dir = tiny[0].split("=", 1)[1]
    whole, _, _ = build_datasets(RunConfig(model="resnet_mini", data_dir=data_dir, download=False))
    for spec, offset in (("0-49", 0), ("50-99", 50)):
        part, val, k = build_datasets(RunConfig(model="resnet_mini", data_dir=data_dir, download=False, classes=spec))
        assert k == 50 and set(part.targets) == set(range(50)) and set(val.targets) == set(range(50))
        originals = [t for t in whole.targets if offset <= t < offset + 50]
        assert [t + offset for t in part.targets] == originals  # the same images, in order, relabelled
        assert torch.equal(part.images, whole.images[torch.tensor([offset <= t < offset + 50 for t in whole.targets])])
    with pytest.raises(ValueError, match="overlap in 10 classes"):
        check_disjoint("0-49", "40-99")
    check_disjoint("0-49", "50-99")


@pytest.mark.parametrize("spec", ["50", "60-50", "0-100", "a-b"])
def test_a_bad_class_range_is_refused(spec):
    with pytest.raises(ConfigError, match="classes"):
        validate(RunConfig(classes=spec))
    with pytest.raises(ConfigError, match="needs pretrained"):
        validate(RunConfig(fresh_head=True))
    assert class_range("50-99", "cifar100") == range(50, 100)


def test_a_schedule_protocol_scales_warm_up_and_cosine_with_its_epochs():
    base = run_config("cnn", "mink", seed=1, out_dir="x")
    for name, (protocol, epochs) in SCHEDULES.items():
        cfg = run_config(name, "mink", seed=1, out_dir="x")
        ref = run_config(protocol, "mink", seed=1, out_dir="x") if protocol != "cnn" else base
        assert cfg.epochs == epochs and cfg.warmup_epochs == pytest.approx(ref.warmup_epochs * epochs / ref.epochs)
        assert (cfg.dropit_strategy, cfg.dropit_gamma) == (ref.dropit_strategy, ref.dropit_gamma)
        short, long = Schedule(cfg, 1000), Schedule(ref, 1000)
        for fraction in (0.01, 0.03, 0.2, 0.5, 0.9):  # the same factor at the same fraction of each schedule
            assert short(int(fraction * epochs * 1000)) == pytest.approx(long(int(fraction * ref.epochs * 1000)), abs=0.01)


def test_the_head_learns_at_its_own_rate():
    cfg = RunConfig(model="resnet_mini", lr=0.02, head_lr_scale=10.0)
    model = build_model("resnet_mini", 50)
    groups = build_optimizer(cfg, model).param_groups
    head = set(map(id, model.get_submodule(classifier_name(model)).parameters()))
    assert [g["lr"] for g in groups] == [0.02, pytest.approx(0.2)]
    assert set(map(id, groups[1]["params"])) == head and not head & set(map(id, groups[0]["params"]))


@pytest.fixture(scope="module")
def study(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("ftstudy")
    count = CountSteps("source")
    summary = run_study(out, protocol="cnn_ft", arms=["plain", "mink"], seeds=1, overrides=tiny, callbacks=[count])
    return out, summary, count.steps


def test_a_study_makes_its_source_first_and_a_second_call_skips_it(study, tiny):
    out, summary, source_steps = study
    assert source_steps > 0 and (out / "sources" / "cnn_source.pt").is_file()
    record = json.loads((out / "sources" / "cnn_source.json").read_text())
    assert record["classes"] == "0-49" and record["model"] == "resnet_mini" and record["top1_source_classes"] >= 0
    assert sorted(summary["protocols"]["cnn_ft"]["arms"]) == ["mink", "plain"]
    run = json.loads((out / "runs" / "cnn_ft-plain-seed0.json").read_text())
    assert run["source"]["sha256"] == record["sha256"] == source_mod.sha256(out / "sources" / "cnn_source.pt")
    assert run["config"]["classes"] == "50-99" and run["config"]["fresh_head"]
    again = CountSteps("")
    run_study(out, protocol="cnn_ft", arms=["plain", "mink"], seeds=1, overrides=tiny, callbacks=[again])
    assert again.steps == 0  # the source and both runs exist: nothing trains


def test_at_step_zero_the_body_is_the_source_and_the_head_is_fresh(study):
    out, _, _ = study
    path = out / "sources" / "cnn_source.pt"
    source = torch.load(path, weights_only=True)
    torch.manual_seed(3)
    fresh = build_model("resnet_mini", 50).state_dict()
    torch.manual_seed(3)
    tuned = build_model("resnet_mini", 50, weights=path, fresh_head=True).state_dict()
    head = classifier_name(build_model("resnet_mini", 50))
    for k, v in tuned.items():
        if k.startswith(f"{head}."):
            assert torch.equal(v, fresh[k]) and not torch.equal(v, source[k]), k
        else:
            assert torch.equal(v, source[k]), k


def test_a_source_that_does_not_match_stops_before_any_training(study, tiny, tmp_path):
    out, _, _ = study
    copy = tmp_path / "study"
    (copy / "sources").mkdir(parents=True)
    for name in ("cnn_source.pt", "cnn_source.json"):
        (copy / "sources" / name).write_bytes((out / "sources" / name).read_bytes())
    pt = copy / "sources" / "cnn_source.pt"
    state = torch.load(pt, weights_only=True)
    state["conv1.weight"] += 1
    torch.save(state, pt)
    count = CountSteps("")
    with pytest.raises(ValueError, match=r"cnn_source.pt does not match its record .*git checkout"):
        run_one(copy, "cnn_ft", "plain", 0, overrides=tiny, callbacks=[count])
    torch.save(build_model("resnet_mini", 10).state_dict(), pt)  # another architecture (a 10-class head), hash fixed
    record = json.loads(pt.with_suffix(".json").read_text())
    pt.with_suffix(".json").write_text(json.dumps({**record, "sha256": source_mod.sha256(pt)}))
    with pytest.raises(ValueError, match=r"cnn_source.pt does not fit resnet_mini"):
        run_one(copy, "cnn_ft", "plain", 0, overrides=tiny, callbacks=[count])
    assert count.steps == 0 and not (copy / "runs").exists()


def test_check_source_names_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="missing: run the study"):
        check_source(tmp_path / "cnn_source.pt", run_config("cnn_ft", "plain", seed=0, out_dir=tmp_path))
    with pytest.raises(ValueError, match="not a fine-tuning protocol"):
        ensure_source(tmp_path, "cnn")
