"""The paper's Cache (MB) column: eight rows, our kept bytes beside the paper's numbers."""
import pytest

from dropit.lab.measure.cache import cache_column, markdown, per_layer
from dropit.lab.reproduce.paper import PAPER_ROWS


@pytest.fixture(scope="module")
def column():
    return cache_column()


def test_eight_rows_with_the_papers_numbers_beside_ours(column):
    assert len(column) == 8
    assert [r["paper_mb"] for r in column] == [648, 598, 20290, 16052, 2826, 2600, 20290, 16056]
    assert [r["dropit"] for r in column] == [row["dropit"] for row in PAPER_ROWS]
    assert all(r["method"] == "meta estimate" and r["peak_mb"] is None for r in column)


def test_kept_bytes_match_the_measured_reference_sizes(column):
    kept = {(r["table"], r["model"]): r["kept_mb"] for r in column}
    # saved activations measured on CPU at batch 128 (shared/reference/dropit-paper.md)
    assert kept[("cifar100", "ResNet-18 (32x32)")] == pytest.approx(575, rel=0.01)
    assert kept[("imagenet", "ResNet-18 (224x224)")] == pytest.approx(2712, rel=0.01)
    assert kept[("cifar100", "ViT-B/16 (224x224)")] == pytest.approx(14.4e3, rel=0.01)  # "14.4 GiB" there is 14.4e3 MiB


def test_dropit_rows_keep_less_than_their_plain_rows(column):
    for r in column:
        assert (r["ratio"] < 0.85) if r["dropit"] else (r["ratio"] == 1.0)
    assert "| cifar100 | ResNet-18 (32x32) w. DropIT |" in markdown(column)


def test_per_layer_report_names_layers():
    report = per_layer("resnet18_cifar", gamma=0.8, batch_size=8)
    names = {row["name"] for row in report.to_rows()}
    assert {"conv1", "layer1.0.conv1", "layer1.0.bn1", "fc"} <= names
    assert report.dense_bytes > 0
