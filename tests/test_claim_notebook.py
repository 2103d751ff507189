"""The claim study's figures and notebook on a constructed study (no training)."""
import json

import pytest

from dropit.lab.claim import figures
from dropit.lab.claim.summary import write_summary
from dropit.lab.io import write_json


def _record(protocol, arm, seed, top1_last):
    epochs = [{"epoch": e, "train_loss": 4.0 - e - 0.1 * seed, "val_top1": top1_last - (3 - e) * 10, "val_top5": 50.0,
               "val_loss": 3.0} for e in (1, 2, 3)]
    final = {"top1": top1_last, "top5": 70.0 + seed, "train_loss": epochs[-1]["train_loss"], "test_loss": 2.0 + seed / 10}
    return {"id": f"{protocol}-{arm}-seed{seed}", "protocol": protocol, "arm": arm, "seed": seed,
            "config": {"model": "resnet_mini", "epochs": 3}, "epochs": epochs, "final": final}


@pytest.fixture
def study(tmp_path):
    for protocol, arms in (("cnn", ("plain", "mink")), ("vit", ("plain", "default_int8"))):
        for arm in arms:
            for seed in range(3):
                top1 = 50.0 + seed + (-1.0 - 0.1 * seed if arm != "plain" else 0.0)
                write_json(tmp_path / "runs" / f"{protocol}-{arm}-seed{seed}.json", _record(protocol, arm, seed, top1))
    rows = [{"step": s, "gamma": g, "noise_plain": 2.0, "noise_dropit": 2.0 - g, "bias": g / 2, "mse_plain": 2.0,
             "mse_dropit": 2.0 - g + g * g / 4, "bias_rel": g / 4} for s in (10, 100) for g in (0.5, 0.9)]
    write_json(tmp_path / "mechanism.json", {"rows": rows})
    write_json(tmp_path / "mechanism_sampled.json", {"rows": [dict(r, strategy="sampled") for r in rows]})
    return tmp_path, write_summary(tmp_path)


def test_summary_bands_and_table_from_a_constructed_study(study):
    out, summary = study
    d = summary["protocols"]["cnn"]["arms"]["mink"]["diff_vs_plain"]["top1"]
    assert d["diffs"] == pytest.approx([-1.0, -1.1, -1.2]) and d["verdict"] == "lower by 1.10"
    assert summary["protocols"]["cnn"]["arms"]["plain"]["top1_last_quarter_gain"] == [10.0, 10.0, 10.0]  # epoch 2 -> 3
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*.json"))]
    band = figures.epoch_bands(runs, "cnn", "val_top1")["plain"]
    assert band["epoch"] == [1, 2, 3] and band["low"][-1] == 50.0 and band["high"][-1] == 52.0 and band["mean"][-1] == 51.0
    rows = figures.stats_rows(summary, ["top1"])
    assert [(r["protocol"], r["arm"], r["verdict"]) for r in rows][:2] == [("cnn", "plain", "(baseline)"), ("cnn", "mink", "lower by 1.10")]
    assert len(figures.mechanism_figure(json.loads((out / "mechanism.json").read_text())["rows"]).data) == 2 * 5
    sampled = figures.mechanism_figure(json.loads((out / "mechanism_sampled.json").read_text())["rows"])
    assert sampled.layout.title.text.endswith("bias (sampled)")  # the title names the strategy measured



def test_claim_markdown_reads_every_figure_from_the_summary(study):
    from dropit.lab.claim.markdown import HEADER, claim_markdown, claim_rows

    _, summary = study
    rows = claim_rows(summary)
    assert [r[:3] for r in rows] == [["cnn: resnet_mini, 3 epochs", "plain", "3"],
                                     ["cnn: resnet_mini, 3 epochs", "DropIT `mink` γ 0.8", "3"],
                                     ["vit: resnet_mini, 3 epochs", "plain", "3"],
                                     ["vit: resnet_mini, 3 epochs", "DropIT `sampled` γ 0.9 + int8", "3"]]
    mink = dict(zip(HEADER, rows[1]))
    assert mink["test top-1 %"] == "49.90 ± 0.90" and mink["verdict"] == "lower by 1.10"
    assert mink["top-1 − plain [95% CI]"].startswith("-1.10 [-1.35, -0.85]")  # 1.10 ± t(0.975, 2) 0.1/sqrt(3)
    assert mink["verdict (loss)"] == "within noise" and mink["top-1 gained in the last quarter"] == "+10.00"
    text = claim_markdown(summary)
    assert text.count("\n|") == 5 and "ResNet-18 (32x32) 77.96 → 78.17 (+0.21, γ 0.8)" in text
    assert "No finished run" in claim_markdown({"runs": [], "protocols": {}})


def test_the_notebook_draws_curves_table_and_mechanism(study, kernel, tmp_path_factory):
    from test_notebooks import PLOTLY, _execute, _outputs

    out, _ = study
    nb = _execute("claim", tmp_path_factory.mktemp("claim_nb"), kernel, study_dir=str(out),
                  mechanism_json=str(out / "mechanism.json"), committed_study="")
    figs = _outputs(nb, PLOTLY)
    assert len(figs) == 4  # cnn curves, vit curves, the table, the mechanism (the committed study skipped)
    shown = _execute("claim", tmp_path_factory.mktemp("claim_nb2"), kernel, study_dir=str(out),
                     mechanism_json="", committed_study=str(out))
    committed = _outputs(shown, PLOTLY)
    assert len(committed) == 6  # the curves, the table, then the committed study's table and both mechanism files
    assert [f["layout"]["title"]["text"].rsplit(": ", 1)[-1] for f in committed[-2:]] == ["mechanism.json",
                                                                                         "mechanism_sampled.json"]
    assert any(t.get("type") == "table" for f in figs for t in f["data"])


from test_notebooks import kernel  # noqa: E402,F401  (the session's Jupyter kernel fixture)


def test_write_figures_leaves_small_plotly_files(study):
    from dropit.lab.claim.figures import write_figures

    out, _ = study
    paths = write_figures(out, out / "mechanism.json")
    assert sorted(p.name for p in paths) == ["curves_cnn.plotly.json", "curves_vit.plotly.json", "mechanism.plotly.json",
                                             "stats.plotly.json"]
    assert all(p.stat().st_size < 200_000 for p in paths)


def test_make_reproduce_runs_a_small_two_arm_one_seed_study(tmp_path, kernel, monkeypatch):
    from lab_fakes import write_cifar100
    from test_notebooks import PLOTLY, _execute, _outputs

    from dropit.lab.reproduce import run as reproduce

    (job,) = [j for j in reproduce.plan("quick", tmp_path) if j.name == "claim"]
    p = job.parameters
    assert p["run_small_study"] and p["small_arms"] == ["plain", "mink"] and p["small_seeds"] == 1
    assert p["small_max_steps"] == 200 and reproduce.NO_DOWNLOAD in p["small_overrides"]
    (paper,) = [j for j in reproduce.plan("paper", tmp_path) if j.name == "claim"]
    assert not paper.parameters["run_small_study"] and paper.parameters["study_dir"].endswith("docs/claim")
    # the paper preset on a folder with no study yet: the notebook says so instead of failing
    (tmp_path / "nb0").mkdir()
    nb0 = _execute("claim", tmp_path / "nb0", kernel, **dict(paper.parameters, study_dir=str(tmp_path / "empty"),
                                                             committed_study=str(tmp_path / "empty")))
    assert "none yet" in "".join(o.get("text", "") for c in nb0.cells for o in c.get("outputs", []))
    # the same job on a fake CIFAR-100 and fewer steps: the notebook trains both arms and draws the study
    write_cifar100(tmp_path / "data", n_train=200, n_test=100)
    monkeypatch.setenv("DROPIT_DATA", str(tmp_path / "data"))
    small = p["small_overrides"] + ["subset=200", "batch_size=50", "eval_batch_size=50", "threads=1", "cache_batch=8"]
    (tmp_path / "nb").mkdir()
    nb = _execute("claim", tmp_path / "nb", kernel, **dict(p, small_overrides=small, small_max_steps=3, small_val_subset=100,
                                                           study_dir=str(tmp_path / "study"), committed_study=str(tmp_path / "none")))
    summary = json.loads((tmp_path / "study" / "claim.json").read_text())
    assert summary["runs"] == ["cnn-mink-seed0", "cnn-plain-seed0"]
    assert summary["protocols"]["cnn"]["arms"]["mink"]["diff_vs_plain"]["top1"]["verdict"] == "one seed: no interval"
    assert len(_outputs(nb, PLOTLY)) == 2  # the curves and the table
