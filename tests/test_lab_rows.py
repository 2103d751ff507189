"""Running table rows: path lookup, per-row time limits, the torchrun launcher."""
import os
from pathlib import Path

import pytest

from dropit.lab.reproduce import rows

ROOT = Path(__file__).resolve().parents[1]


def _data_root():
    for p in (os.environ.get("DROPIT_DATA"), ROOT.parent / "shared" / "data", ROOT / "data"):
        if p and (Path(p) / "cifar-100-python" / "train").is_file():
            return str(Path(p).resolve())
    pytest.skip("CIFAR-100 not found (set DROPIT_DATA)")


TINY = ["subset=200", "val_subset=100", "batch_size=20", "cache_batch=4", "checkpoint=false"]


def test_paths_resolve_from_the_project_root(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")
    assert rows.project_root() == ROOT
    assert rows.resolve("params/smoke.yaml") == ROOT / "params" / "smoke.yaml"
    assert rows.resolve_out("results/x") == ROOT / "results" / "x"
    assert rows.resolve_out(tmp_path) == tmp_path
    assert rows.table_params("imagenet", "quick")[0] == "params/imagenet_resnet18_quick.yaml"
    assert len(rows.table_params("cifar100", "paper")) == 4
    iclr = rows.table_params("iclr", "quick")
    assert len(iclr) == 8 and iclr[1] == "params/iclr_imagenet_deit_tiny_dropit05_quick.yaml"
    assert all((ROOT / f).is_file() for f in iclr + rows.table_params("iclr", "paper"))
    with pytest.raises(ValueError):
        rows.table_params("cifar100", "fast")


def test_as_list_takes_what_papermill_p_passes():
    assert rows.as_list('["a.yaml", "b.yaml"]') == ["a.yaml", "b.yaml"]
    assert rows.as_list("[params/x.yaml]") == ["params/x.yaml"]
    assert rows.as_list("a.yaml") == ["a.yaml"] and rows.as_list(None) == [] and rows.as_list(("k=v",)) == ["k=v"]


def test_time_limit_stops_a_row_and_says_so(tmp_path):
    m = rows.run_row("params/smoke.yaml", [f"data_dir={_data_root()}", *TINY], out_dir=tmp_path / "r", time_limit_s=0.0)
    assert m["status"] == "stopped" and m["final"]["stopped"]
    assert m["epochs"][-1]["steps"] == 1  # stopped after the first step
    from dropit.lab.reproduce import tables

    assert "stopped early" in tables.describe_run(m)


@pytest.mark.slow
def test_torchrun_launcher_reads_back_metrics(tmp_path):
    m = rows.run_row("params/smoke.yaml", [f"data_dir={_data_root()}", *TINY, "max_steps=2", "threads=1"],
                     out_dir=tmp_path / "ddp", launcher="torchrun", nproc=1)
    assert m["environment"]["world_size"] == 1 and m["final"]["top1"] is not None
    assert (tmp_path / "ddp" / "metrics.json").is_file()


def test_pairs_run_dropit_first_and_plain_at_matched_steps(tmp_path, monkeypatch):
    calls = []

    def fake_run_row(f, overrides, *, out_dir, launcher, time_limit_s):
        calls.append((Path(f).stem, list(overrides), time_limit_s))
        dropit = "dropit" in Path(f).stem
        return {"final": {"stopped": dropit, "steps": 7 if dropit else 99}, "name": Path(f).stem}

    monkeypatch.setattr(rows, "run_row", fake_run_row)
    files = rows.table_params("cifar100", "quick")
    out = rows.run_rows(files, ["subset=100"], out_root=tmp_path, time_budget_s=400, row_margin_s=0)
    assert [m["name"] for m in out] == [Path(f).stem for f in files]  # returned in file order
    stems = [c[0] for c in calls]
    assert stems == ["cifar100_resnet18_dropit_quick", "cifar100_resnet18_quick",
                     "cifar100_vit_b16_dropit_quick", "cifar100_vit_b16_quick"]
    assert calls[1][1] == ["subset=100", "max_steps=7"] and calls[0][1] == ["subset=100"]
    assert calls[0][2] == pytest.approx(400 / 4 * 2 * 0.6, rel=0.01)  # DropIT gets 60% of the pair's share
