"""The short fine-tuning run on real text (dropit.lab.models.finetune_text) and its committed curves."""
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
from dropit.lab.models import finetune_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_the_text_is_the_standard_library_and_the_held_out_part_is_disjoint():
    train = finetune_text.stdlib_bytes(5000)
    assert train.equal(finetune_text.stdlib_bytes(5000))
    assert b"import " in bytes(train.tolist())  # Python source
    assert not finetune_text.stdlib_bytes(1000, skip=5000).equal(train[:1000])
    assert finetune_text.stdlib_bytes(1000, skip=4000).equal(train[4000:])


def test_a_tiny_run_trains_both_arms_from_the_same_start(tmp_path):
    result = finetune_text.compare(steps=3, seq=16, batch=2, train_bytes=20_000, held_out_bytes=5_000)
    assert set(result["curves"]) == set(finetune_text.VARIANTS)
    assert all(len(c) == 3 and all(v == v and v < 10 for v in c) for c in result["curves"].values())
    assert set(result["held_out"]) == set(finetune_text.VARIANTS)
    svg = finetune_text.write_svg(result, tmp_path / "f.svg").read_text()
    assert svg.count("<polyline") == 2 and "DropIT" in svg


def test_the_committed_curves_follow_plain():
    result = json.loads((ROOT / "docs" / "transformers" / "finetune.json").read_text())
    plain, dropit_ = (result["curves"][k] for k in finetune_text.VARIANTS)
    assert len(plain) == len(dropit_) >= 200
    last = [sum(c[-50:]) / 50 for c in (plain, dropit_)]
    assert last[0] < 0.7 * plain[0]  # it trained
    assert abs(last[1] - last[0]) < 0.05 * last[0]  # and DropIT + int8 follows plain within 5%
    assert abs(result["held_out"]["dropit_int8"] - result["held_out"]["plain"]) < 0.05 * result["held_out"]["plain"]
    assert (ROOT / "docs" / "transformers" / "finetune.svg").exists()
