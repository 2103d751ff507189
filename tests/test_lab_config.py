"""Parameter files and command-line overrides: coercion, and clear errors before any work."""
import json
from pathlib import Path

import pytest

from dropit.lab.train.config import ConfigError, RunConfig, field_names, load_config
from dropit.lab.paper import ALL_ROWS

PARAMS = Path(__file__).resolve().parent.parent / "params"


def _write(tmp_path, text, name="p.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_overrides_are_coerced_to_field_types(tmp_path):
    p = _write(tmp_path, "model: resnet_mini\nepochs: 5\nlr: 0.1\n")
    cfg = load_config(p, ["epochs=3", "lr=1e-3", "milestones=[1,2]", "dropit=true", "data_dir=null",
                          "label=quick run 2", "grad_clip=1", "subset=100"])
    assert cfg.epochs == 3 and type(cfg.epochs) is int
    assert cfg.lr == pytest.approx(1e-3) and type(cfg.lr) is float  # YAML reads 1e-3 as a string
    assert cfg.milestones == [1, 2] and all(type(m) is int for m in cfg.milestones)
    assert cfg.dropit is True
    assert cfg.data_dir is None
    assert cfg.label == "quick run 2"
    assert cfg.grad_clip == 1.0 and type(cfg.grad_clip) is float
    assert cfg.model == "resnet_mini"  # from the file


def test_file_values_are_coerced(tmp_path):
    p = _write(tmp_path, "weight_decay: 5.0e-4\nwarmup_epochs: 1\nlabel: 7\n")
    cfg = load_config(p)
    assert cfg.weight_decay == pytest.approx(5e-4)
    assert type(cfg.warmup_epochs) is float
    assert cfg.label == "7"


def test_unknown_key_in_file_names_key_file_and_valid_keys(tmp_path):
    p = _write(tmp_path, "epochs: 2\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "'learning_rate'" in msg and str(p) in msg
    for key in ("lr", "epochs", "dropit_gamma"):
        assert key in msg


def test_unknown_override_is_rejected_with_suggestion(tmp_path):
    with pytest.raises(ConfigError, match="'epoch'.*Did you mean 'epochs'"):
        load_config(None, ["epoch=3"])


def test_a_bad_value_names_where_it_came_from(tmp_path):
    """The file or the command line, whichever gave the value (issue 21: the override was blamed on the file)."""
    p = _write(tmp_path, "model: resnet_mini\ndropit_gamma: 0.5\n", "smoke.yaml")
    with pytest.raises(ConfigError) as err:
        load_config(p, ["dropit_gamma=1.5"])
    assert str(err.value).startswith("parameter 'dropit_gamma' (from the command line) must be in [0, 1)")
    assert str(p) not in str(err.value)
    bad = _write(tmp_path, "model: resnet_mini\ndropit_gamma: 1.5\n", "bad.yaml")
    with pytest.raises(ConfigError, match=rf"'dropit_gamma' \(in {bad}\) must be in \[0, 1\)"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"'epochs' \(from the command line\) must be positive"):
        load_config(p, ["epochs=0"])
    with pytest.raises(ConfigError, match=rf"'epochs' \(in {bad}\) must be an integer"):
        load_config(_write(tmp_path, "epochs: many\n", "bad.yaml"))


def test_the_gamma_range_is_the_cores_rule():
    from dropit.strategies import check_gamma

    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError) as core:
            check_gamma(bad, where="X")
        with pytest.raises(ConfigError) as lab:
            load_config(None, [f"dropit_gamma={bad}"])
        assert str(lab.value).removeprefix("parameter 'dropit_gamma' (from the command line)") == str(core.value).removeprefix("X")


@pytest.mark.parametrize("key,means", [("gamma", "dropit_gamma"), ("strategy", "dropit_strategy"), ("exclude", "dropit_exclude")])
def test_suggestions_prefer_the_dropit_key(key, means):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{key}=0.5"])
    assert f"unknown parameter '{key}' (from the command line). Did you mean '{means}'" in str(err.value)
    with pytest.raises(ConfigError, match=f"Did you mean '{means}'"):
        load_config(None, [f"--{key}=0.5"])


def test_malformed_yaml_names_file(tmp_path):
    p = _write(tmp_path, "epochs: [1, 2\nlr: 0.1\n")
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        load_config(p)
    assert str(p) in str(e.value)


def test_non_mapping_file_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_write(tmp_path, "- epochs\n- 3\n"))


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("override, key", [
    ("epochs=three", "epochs"), ("epochs=2.5", "epochs"), ("dropit=maybe", "dropit"),
    ("milestones=5x", "milestones"), ("lr=fast", "lr"), ("optimizer=adam", "optimizer"),
    ("amp=fp8", "amp"), ("dropit_gamma=1.0", "dropit_gamma"), ("batch_size=0", "batch_size"),
    ("model=resnet50", "model"), ("noequals", "noequals"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert key in str(e.value)


def test_bad_choice_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="sgd, adamw"):
        load_config(None, ["optimizer=adam"])


def test_quantize_level_is_checked_against_the_shipped_ones():
    assert load_config(None, ["dropit_quantize=int4"]).dropit_quantize == "int4"
    with pytest.raises(ConfigError, match=r"dropit_quantize.*'int3' is not one of null, int8, int4"):
        load_config(None, ["dropit_quantize=int3"])


def test_compile_memory_budget_is_a_fraction_that_needs_compile():
    cfg = load_config(None, ["compile=true", "compile_memory_budget=0.2"])
    assert cfg.compile_memory_budget == 0.2 and RunConfig().compile_memory_budget is None
    assert load_config(None, ["compile=true", "compile_memory_budget=0"]).compile_memory_budget == 0.0
    for bad in ("1.5", "-0.1", ".nan"):
        with pytest.raises(ConfigError, match=r"compile_memory_budget.*must be in \[0, 1\]"):
            load_config(None, ["compile=true", f"compile_memory_budget={bad}"])
    with pytest.raises(ConfigError, match="compile_memory_budget.*needs compile: true"):
        load_config(None, ["compile_memory_budget=0.5"])
    with pytest.raises(ConfigError, match="compile_memory_budget.*must be a number"):
        load_config(None, ["compile=true", "compile_memory_budget=half"])


def test_every_field_has_a_default_and_is_settable():
    cfg = RunConfig()
    assert set(cfg.to_dict()) == set(field_names())


@pytest.mark.parametrize("path", sorted(PARAMS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_parameter_files_load(path):
    cfg = load_config(path)
    assert cfg.label, f"{path.name} must say what it runs"


def test_one_full_and_one_quick_file_per_paper_row():
    for row in ALL_ROWS:
        full = load_config(PARAMS / f"{row['id']}.yaml")
        quick = load_config(PARAMS / f"{row['id']}_quick.yaml")
        for cfg in (full, quick):
            assert cfg.paper_row == row["id"]
            assert cfg.dropit == row["dropit"]
            if row["dropit"]:
                assert cfg.dropit_gamma == row["gamma"]
        assert full.model == row["model_name"]
        assert (full.image_size or 32) == row["image_size"]
        assert full.subset is None and full.max_steps is None
        assert quick.subset is not None and quick.epochs < full.epochs
        if row.get("dataset", row["table"]) == "imagenet":
            assert full.dataset == "imagenet" and quick.dataset == "imagenette"


def test_iclr_files_follow_the_release():
    for row in (r for r in ALL_ROWS if r["table"] == "iclr"):
        full = load_config(PARAMS / f"{row['id']}.yaml")
        quick = load_config(PARAMS / f"{row['id']}_quick.yaml")
        assert full.dataset == row["dataset"] and quick.model == "deit_mini" and quick.threads == 2
        if row["dropit"]:  # exact min-k, patch embedding and head dense, as the release's DeiT scripts
            assert full.dropit_strategy == quick.dropit_strategy == "mink"
            assert full.dropit_exclude == quick.dropit_exclude == ["patch_embed.proj", "head"]
        if row["dataset"] == "imagenet":  # the DeiT recipe, from scratch
            assert (full.optimizer, full.lr, full.batch_size, full.epochs) == ("adamw", 1e-3, 1024, 300)
            assert (full.weight_decay, full.warmup_epochs, full.label_smoothing) == (0.05, 5, 0.1) and not full.pretrained
        else:  # fine-tuned from the DeiT authors' ImageNet-1k file, by timm's name for it
            assert full.pretrained == f"timm:{row['model_name']}_patch16_224.fb_in1k" and full.image_size == 224


# ---------------------------------------------------------------- base files


RESOLVED = Path(__file__).parent / "data" / "params_resolved.json"  # every params/*.yaml resolved before bases existed


def test_every_parameter_file_resolves_as_before_it_named_a_base():
    before = json.loads(RESOLVED.read_text())
    assert set(before) <= {p.name for p in PARAMS.glob("*.yaml")}  # files added since may only add
    defaults = RunConfig().to_dict()
    for name, values in before.items():
        now = load_config(PARAMS / name).to_dict()
        assert {k: now[k] for k in values} == values, name
        assert {k: now[k] for k in set(now) - set(values)} == {k: defaults[k] for k in set(now) - set(values)}, name
    extending = [p.name for p in PARAMS.glob("*.yaml") if "\nbase:" in "\n" + p.read_text()]
    assert len(extending) >= 15  # the dropit and quick variants state only what differs


def test_a_base_chain_says_which_file_set_which_key(tmp_path):
    _write(tmp_path, "model: resnet_mini\nlr: 0.3\nepochs: 5\n", "plain.yaml")
    _write(tmp_path, "base: plain.yaml\nlr: 0.2\n", "mid.yaml")
    top = _write(tmp_path, "base: mid.yaml\ndropit: true\n", "top.yaml")
    cfg = load_config(top, ["epochs=2"])
    assert (cfg.model, cfg.lr, cfg.epochs, cfg.dropit) == ("resnet_mini", 0.2, 2, True)
    assert cfg.sources.chain == [str(top), str(tmp_path / "mid.yaml"), str(tmp_path / "plain.yaml")]
    assert cfg.sources.keys == {"model": str(tmp_path / "plain.yaml"), "lr": str(tmp_path / "mid.yaml"),
                                "epochs": "the command line", "dropit": str(top)}
    assert "base" not in cfg.to_dict()


def test_an_error_in_a_base_names_the_file_and_the_chain(tmp_path):
    _write(tmp_path, "model: resnet_mini\nlr: -1\n", "plain.yaml")
    top = _write(tmp_path, "base: plain.yaml\ndropit: true\n", "top.yaml")
    with pytest.raises(ConfigError, match=r"'lr' \(in .*plain\.yaml, a base of .*top\.yaml\) must be positive"):
        load_config(top)
    _write(tmp_path, "model: resnet_mini\nlrr: 0.1\n", "typo.yaml")
    with pytest.raises(ConfigError, match=r"unknown parameter 'lrr' \(in .*typo\.yaml\).*Did you mean 'lr'"):
        load_config(_write(tmp_path, "base: typo.yaml\n", "child.yaml"))


def test_a_cycle_of_bases_is_named_with_its_fix(tmp_path):
    a = _write(tmp_path, "base: b.yaml\nlr: 0.1\n", "a.yaml")
    _write(tmp_path, "base: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match=r"cycle of bases \(.*a\.yaml -> .*b\.yaml -> .*a\.yaml\).*remove the 'base:'"):
        load_config(a)
    with pytest.raises(ConfigError, match="cycle"):
        load_config(_write(tmp_path, "base: self.yaml\n", "self.yaml"))


def test_a_missing_base_file_is_named_with_its_fix(tmp_path):
    top = _write(tmp_path, "base: nowhere.yaml\nlr: 0.1\n", "top.yaml")
    with pytest.raises(ConfigError, match=r"top\.yaml names 'base: nowhere\.yaml', but there is no file .*nowhere\.yaml"
                                          r".*relative to .*fix the name or remove"):
        load_config(top)
    with pytest.raises(ConfigError, match="'base' must name one parameter file"):
        load_config(_write(tmp_path, "base: [a.yaml, b.yaml]\n", "two.yaml"))


def test_metrics_json_records_where_each_key_came_from(tmp_path):
    from lab_fakes import write_cifar100

    from dropit.lab.train.loop import run

    write_cifar100(tmp_path / "data", n_train=40, n_test=20)
    _write(tmp_path, "model: resnet_mini\nepochs: 1\nbatch_size: 20\nlr: 0.05\nthreads: 1\n", "plain.yaml")
    top = _write(tmp_path, "base: plain.yaml\nmax_steps: 1\n", "top.yaml")
    run(load_config(top, [f"data_dir={tmp_path / 'data'}", f"out_dir={tmp_path / 'out'}", "cache_batch=4"]))
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["config_sources"]["chain"] == [str(top), str(tmp_path / "plain.yaml")]
    assert m["config_sources"]["keys"]["lr"] == str(tmp_path / "plain.yaml")
    assert m["config_sources"]["keys"]["max_steps"] == str(top)
    assert m["config_sources"]["keys"]["out_dir"] == "the command line"
