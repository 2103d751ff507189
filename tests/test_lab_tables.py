"""The paper's tables with runs beside them: matching, labelling, Markdown and plain data."""
import json

import pytest

from dropit.lab.reproduce import tables
from dropit.lab.paper import PAPER_ROWS


def _metrics(model="resnet_mini", dataset="cifar100", dropit=False, top1=12.5, top5=30.25, cache=3 * 2**20,
             label="quick", epochs=2, images=5000, paper_row=None, stopped=False):
    return {
        "config": {"model": model, "dataset": dataset, "dropit": dropit, "dropit_gamma": 0.9, "dropit_strategy": "mink",
                   "label": label, "image_size": None, "paper_row": paper_row, "out_dir": "runs/x"},
        "status": "stopped" if stopped else "done",
        "epochs": [{"epoch": i + 1, "partial": False} for i in range(epochs)],
        "final": {"top1": top1, "top5": top5, "cache_bytes": cache, "epochs_completed": epochs,
                  "train_images": images, "stopped": stopped, "val_images": 1000},
    }


def test_paper_rows_keep_the_shared_keys():
    keys = {"table", "model", "dropit", "gamma", "top1", "top5", "cache_mb", "model_name", "image_size"}
    assert len(PAPER_ROWS) == 8
    for r in PAPER_ROWS:
        assert keys <= set(r)
        assert r["gamma"] == ((0.8 if r["model_name"].startswith("resnet") else 0.9) if r["dropit"] else None)
    c100 = [r for r in PAPER_ROWS if r["table"] == "cifar100"]
    assert [(r["top1"], r["cache_mb"]) for r in c100] == [(77.96, 648), (78.17, 598), (90.32, 20290), (90.90, 16052)]


def test_runs_fill_their_rows_and_others_say_not_run():
    plain = _metrics()
    drop = _metrics(dropit=True, top1=11.0, cache=2 * 2**20)
    rows = tables.build_table("cifar100", [plain, drop])
    assert [r["model"] for r in rows] == ["ResNet-18 (32x32)", "ResNet-18 (32x32) w. DropIT",
                                          "ViT-B/16 (224x224)", "ViT-B/16 (224x224) w. DropIT"]
    assert rows[0]["top1"] == 12.5 and rows[0]["paper_top1"] == 77.96 and rows[0]["cache_mb"] == 3.0
    assert rows[1]["top1"] == 11.0 and rows[1]["paper_top1"] == 78.17 and rows[1]["cache_mb"] == 2.0
    assert rows[0]["ran"] == "quick: resnet_mini, 2 epochs, 5000 images, cifar100 32px"
    assert rows[1]["ran"].endswith("DropIT γ=0.9 (mink)")
    assert rows[2]["ran"] == rows[3]["ran"] == "not run" and rows[2]["top1"] is None
    assert rows[2]["paper_top1"] == 90.32


def test_imagenette_and_vit_runs_go_to_the_imagenet_vit_row():
    m = _metrics(model="vit_tiny", dataset="imagenette", dropit=True)
    t = tables.build_tables([m])
    assert all(r["ran"] == "not run" for r in t["cifar100"])
    filled = [r for r in t["imagenet"] if r["ran"] != "not run"]
    assert [r["id"] for r in filled] == ["imagenet_vit_b16_dropit"]


def test_explicit_paper_row_wins_and_later_run_replaces_earlier():
    a = _metrics(top1=1.0, paper_row="cifar100_vit_b16")
    b = _metrics(top1=2.0, paper_row="cifar100_vit_b16")
    rows = tables.build_table("cifar100", [a, b])
    assert rows[2]["top1"] == 2.0 and rows[0]["ran"] == "not run"


def test_what_ran_comes_from_the_metrics_not_the_label():
    m = _metrics(epochs=1, stopped=True, label="")
    m["epochs"].append({"epoch": 2, "partial": True, "steps": 17})
    ran = tables.build_table("cifar100", [m])[0]["ran"]
    assert ran.startswith("resnet_mini, 1 epoch + 17 steps, 5000 images") and "stopped early" in ran


def test_markdown_layout():
    md = tables.to_markdown(tables.build_table("cifar100", [_metrics()]))
    lines = md.splitlines()
    assert lines[0].startswith("| Model | Top-1 (paper) | Top-1 (ours) ± SE | Top-5 (paper) | Top-5 (ours) | Cache MB (paper)")
    assert len(lines) == 2 + 4 and all(l.count("|") == lines[0].count("|") for l in lines)
    # 12.5% of 1000 test images: ± sqrt(0.125 * 0.875 / 1000) = 1.05 points
    assert "| ResNet-18 (32x32) | 77.96 | 12.50 ± 1.05 | 94.05 | 30.25 | 648 | 3.00 |" in md
    assert "not run" in lines[-1]
    both = tables.tables_markdown([])
    assert "### CIFAR-100" in both and "### ImageNet-1k" in both


def test_runs_from_files_and_folders(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "metrics.json").write_text(json.dumps(_metrics(top1=5.0)))
    (tmp_path / "r2.json").write_text(json.dumps(_metrics(dropit=True, top1=6.0)))
    rows = tables.build_table("cifar100", [tmp_path / "r1", str(tmp_path / "r2.json")])
    assert rows[0]["top1"] == 5.0 and rows[1]["top1"] == 6.0
    assert rows[0]["run_dir"] == str(tmp_path / "r1")
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        tables.build_table("cifar100", [tmp_path / "nope"])
    with pytest.raises(ValueError, match="unknown table"):
        tables.build_table("mnist")


def test_iclr_table_rows_gammas_and_inference():
    from dropit.lab.paper import ICLR_ROWS

    assert [(r["top1"], r["gamma"]) for r in ICLR_ROWS] == [
        (72.1, None), (72.5, 0.5), (72.4, 0.6), (72.1, 0.7), (89.7, None), (90.1, 0.9), (90.8, None), (91.3, 0.9)]
    runs = [
        _metrics(model="deit_mini", dataset="imagenette", dropit=True, top1=30.0),  # gamma 0.9: no such row, first DropIT
        _metrics(model="deit_mini", dataset="imagenette", top1=20.0),
        _metrics(model="deit_base", dataset="cifar100", dropit=True, top1=40.0),
        _metrics(model="deit_mini", dataset="cifar100", top1=10.0, paper_row="iclr_cifar100_deit_base"),
    ]
    runs[0]["config"]["dropit_gamma"] = 0.6
    rows = {r["id"]: r for r in tables.build_table("iclr", runs)}
    assert len(rows) == 8
    assert rows["iclr_imagenet_deit_tiny_dropit06"]["top1"] == 30.0 and rows["iclr_imagenet_deit_tiny"]["top1"] == 20.0
    assert rows["iclr_cifar100_deit_base_dropit"]["top1"] == 40.0 and rows["iclr_cifar100_deit_base"]["top1"] == 10.0
    assert rows["iclr_imagenet_deit_tiny_dropit05"]["ran"] == "not run"
    assert rows["iclr_imagenet_deit_tiny_dropit06"]["model"] == "DeiT-Ti, ImageNet-1k from scratch w. DropIT γ=0.6"
    assert rows["iclr_cifar100_deit_small"]["paper_top5"] is None and rows["iclr_cifar100_deit_small"]["paper_top1"] == 89.7
    assert all(r["ran"] == "not run" for r in tables.build_table("imagenet", runs))  # DeiT runs stay in their table
    md = tables.tables_markdown(runs)
    assert "### ICLR 2023 release: DeiT (timm)" in md and "| DeiT-B, CIFAR-100 fine-tuned w. DropIT γ=0.9 | 91.30 | 40.00 ± 1.55 | – |" in md


def test_a_run_without_its_test_image_count_shows_no_error():
    m = _metrics()
    del m["final"]["val_images"]  # metrics.json written before the count was recorded
    row = tables.build_table("cifar100", [m])[0]
    assert row["top1_se"] is None and "| 12.50 |" in tables.to_markdown([row])
    assert "binomial standard error" in tables.tables_markdown([])


def test_a_dropit_row_is_compared_with_its_plain_row_by_the_labs_one_rule():
    plain, drop = _metrics(top1=12.5), _metrics(dropit=True, top1=11.0)
    rows = tables.build_table("cifar100", [plain, drop])
    # one run each on 1000 test images: ± hypot(1.046, 0.989) = 1.44, within two of them
    assert rows[1]["top1_vs_plain"] == "-1.50 ± 1.44 (one seed each, binomial SEs), within noise at 1000 test images"
    assert rows[0]["top1_vs_plain"] is None and rows[3]["top1_vs_plain"] is None  # plain, and a row not run
    assert "| -1.50 ± 1.44 (one seed each, binomial SEs), within noise at 1000 test images |" in tables.to_markdown(rows)
    far = tables.build_table("cifar100", [plain, _metrics(dropit=True, top1=2.0)])[1]["top1_vs_plain"]
    assert far.startswith("-10.50 ± ") and "within noise" not in far
    stopped = tables.build_table("cifar100", [plain, _metrics(dropit=True, top1=11.0, stopped=True)])
    assert stopped[1]["top1_vs_plain"] is None  # a stopped run gets no verdict
