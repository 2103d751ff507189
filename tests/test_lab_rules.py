"""Each of the lab's rules has one home, and every caller asks it: image size, dense layers, strategies, memory."""
import mmap
import re
from pathlib import Path

import pytest
import torch

import dropit
from dropit.lab.measure import frontier
from dropit.lab.models.catalog import MODEL_NAMES, build_model, default_dropit_exclude, default_image_size
from dropit.lab.train import config, runtime

LAB = Path(__file__).resolve().parents[1] / "dropit" / "lab"


def _lab_sources():
    return {p.relative_to(LAB).as_posix(): p.read_text() for p in LAB.rglob("*.py")}


def test_default_image_size_by_dataset_then_by_model():
    assert default_image_size("resnet18", "cifar100") == 32 and default_image_size("resnet_mini", "imagenette") == 224
    assert [default_image_size(m) for m in ("resnet18_cifar", "resnet_mini", "vit_tiny", "deit_mini")] == [32] * 4
    assert [default_image_size(m) for m in ("resnet18", "vit_b_16", "deit_tiny")] == [224] * 3
    assert build_model("vit_tiny", 10).image_size == default_image_size("vit_tiny")
    with pytest.raises(ValueError, match="unknown model 'resnet50'"):
        build_model("resnet50", 10)


def test_no_other_image_size_rule_in_the_lab():
    # the shapes of the five rules that disagreed before: a size decided from a dataset or model name inline
    pattern = re.compile(r"(32|64|224) if [^\n]*(dataset|model_name|name) (==|in)|\"cifar100\" else (64|224)")
    found = {f for f, text in _lab_sources().items() if f != "models/catalog.py" and pattern.search(text)}
    assert not found, f"decide the image size with models.catalog.default_image_size in {sorted(found)}"


def test_dense_layers_one_rule_for_runs_frontier_and_paper_column():
    model = build_model("resnet18_cifar", 100)
    assert default_dropit_exclude(model) == ["conv1", "fc"]
    assert default_dropit_exclude(model, classifier=False) == ["conv1"]  # the paper's v1 Cache column
    model = build_model("resnet_mini", 100)
    frontier.CONFIGS["DropIT"].convert(model)
    converted = {name for name, _, f in dropit.converted_modules(model) if f.kind != "relu"}
    first, classifier = default_dropit_exclude(model)
    assert converted and first not in converted and classifier not in converted


def test_strategies_and_models_come_from_their_homes():
    assert config.CHOICES["dropit_strategy"] == tuple(dropit.STRATEGIES)
    assert config.MODELS == MODEL_NAMES


def _touched_pages(nbytes: int) -> mmap.mmap:
    """Fresh anonymous memory, every page written: resident whatever the allocator has cached before
    (a torch tensor may reuse pages freed by an earlier test and so grow nothing)."""
    block = mmap.mmap(-1, nbytes)
    block.write(b"\1" * nbytes)
    return block


def test_peak_resident_memory_resets_and_grows():
    if not runtime.reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs here")
    _touched_pages(64 * 2**20).close()
    runtime.reset_peak_rss()
    assert runtime.peak_rss_bytes() < runtime.rss_bytes() + 32 * 2**20  # the freed 64 MiB no longer count
    peak = runtime.PeakMemory(torch.device("cpu"))
    peak.reset()
    again = _touched_pages(64 * 2**20)
    grown, kind = peak.read()
    again.close()
    assert kind == "cpu_peak_rss_growth" and grown >= 48 * 2**20
