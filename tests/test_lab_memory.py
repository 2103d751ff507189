"""The paper's Cache (MB) column: eight rows, our kept bytes beside the paper's numbers."""
import pytest

from dropit.lab.measure.cache import cache_column, markdown, paper_per_layer_pair, per_layer_pair
from dropit.lab.paper import PAPER_ROWS


@pytest.fixture(scope="module")
def column():
    return cache_column()


@pytest.mark.slow
def test_eight_rows_with_the_papers_numbers_beside_ours(column):
    assert len(column) == 8
    assert [r["paper_mb"] for r in column] == [648, 598, 20290, 16052, 2826, 2600, 20290, 16056]
    assert [r["dropit"] for r in column] == [row["dropit"] for row in PAPER_ROWS]
    assert all(r["method"] == "meta estimate" and r["peak_mb"] is None for r in column)


@pytest.mark.slow
def test_kept_bytes_match_the_measured_reference_sizes(column):
    kept = {(r["table"], r["model"]): r["kept_mb"] for r in column}
    # saved activations measured on CPU at batch 128 (shared/reference/dropit-paper.md)
    assert kept[("cifar100", "ResNet-18 (32x32)")] == pytest.approx(575, rel=0.01)
    assert kept[("imagenet", "ResNet-18 (224x224)")] == pytest.approx(2712, rel=0.01)
    assert kept[("cifar100", "ViT-B/16 (224x224)")] == pytest.approx(14.4e3, rel=0.01)  # "14.4 GiB" there is 14.4e3 MiB


@pytest.mark.slow
def test_dropit_rows_keep_less_than_their_plain_rows(column):
    for r in column:
        assert (r["ratio"] < 0.85) if r["dropit"] else (r["ratio"] == 1.0)
    assert "| CIFAR-100 | ResNet-18 (32x32) w. DropIT | 0.8 | 598 |" in markdown(column)


def test_per_layer_pair_names_layers_and_leaves_the_rules_layers_dense():
    pair = per_layer_pair("resnet18_cifar", gamma=0.8, strategy="mink", batch_size=8, device="cpu")
    plain, drop = pair["plain"], pair["DropIT γ=0.8"]
    assert {"conv1", "bn1", "layer1.0.bn1", "fc"} <= {r["name"] for r in plain}
    assert all(r["bytes"] or r["dense_bytes"] for r in plain + drop)  # layers keeping nothing left out
    by_name = {r["name"]: r for r in drop}
    assert by_name["conv1"]["dense_bytes"] == 0 and by_name["fc"]["dense_bytes"] == 0  # the rule's dense layers
    assert by_name["layer1.0.conv1"]["dense_bytes"] > 0  # stored compactly
    assert sum(r["bytes"] for r in drop) < sum(r["bytes"] for r in plain)
    estimated = per_layer_pair("resnet18_cifar", gamma=0.8, strategy="mink", batch_size=8)  # meta device
    assert {label: [(r["name"], r["bytes"]) for r in rows] for label, rows in estimated.items()} == \
        {label: [(r["name"], r["bytes"]) for r in rows] for label, rows in pair.items()}


def test_paper_rows_leave_only_the_first_layer_dense():
    row = next(r for r in PAPER_ROWS if r["dropit"] and r["model_name"] == "resnet18_cifar")
    drop = paper_per_layer_pair(row, batch_size=2)[f"DropIT γ={row['gamma']:g}"]
    by_name = {r["name"]: r for r in drop}
    assert by_name["conv1"]["dense_bytes"] == 0 and by_name["fc"]["dense_bytes"] > 0
