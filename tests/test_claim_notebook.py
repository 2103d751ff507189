"""The claim study's figures and notebook on a constructed study (no training)."""
import json

import pytest

from dropit.lab.claim import figures
from dropit.lab.claim.summary import write_summary
from dropit.lab.io import write_json

from lab_fakes import ROOT


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
    assert [(r["protocol"], r["arm"], r["verdict"]) for r in rows][:2] == [("cnn", "plain", "(baseline)"), ("cnn", "mink γ 0.8", "lower by 1.10")]
    assert [r["arm"] for r in rows][:2] == ["plain", "mink γ 0.8"]  # named by the arm's settings
    mech = figures.mechanism_figure(json.loads((out / "mechanism.json").read_text())["rows"])
    assert len(mech.data) == 2 * 2 and [t.name for t in mech.data if t.showlegend is not False] == ["step 10", "step 100"]
    # left: bias / ‖g‖ in percent (g / 4 -> 12.5 and 22.5); right: DropIT's noise over plain's ((2 - g) / 2)
    assert list(mech.data[0].y) == pytest.approx([12.5, 22.5]) and list(mech.data[1].y) == pytest.approx([0.75, 0.55])
    assert "At γ 0.9, DropIT's gradient is biased by 22% of ‖g‖ and its noise is 0.55× plain's: less noise, bought" \
        in mech.layout.title.text
    sampled = figures.mechanism_figure(json.loads((out / "mechanism_sampled.json").read_text())["rows"])
    assert "(sampled)" in sampled.layout.title.text.split("<br>")[0]  # the title names the strategy measured


def test_the_mechanism_legend_keeps_four_steps_at_most():
    rows = [{"step": s, "gamma": g, "noise_plain": 1.0, "noise_dropit": 1.1, "bias_rel": 0.1, "bias": 0.1}
            for s in range(10, 80, 10) for g in (0.5, 0.9)]
    fig = figures.mechanism_figure(rows)
    assert [t.name for t in fig.data if t.showlegend is not False] == ["step 10", "step 30", "step 50", "step 70"]
    assert "no less noise" in fig.layout.title.text


def test_arms_are_named_from_their_settings():
    from dropit.lab.claim.markdown import arm_name

    assert arm_name({"dropit": True, "dropit_strategy": "mink", "dropit_gamma": 0.8}) == "mink γ 0.8"
    assert arm_name({"dropit": True, "dropit_strategy": "sampled", "dropit_gamma": 0.9, "dropit_quantize": "int8"}) \
        == "sampled γ 0.9 + int8"
    # an arm added later names itself, with no table to extend
    assert arm_name({"dropit": True, "dropit_strategy": "unbiased", "dropit_gamma": 0.5}) == "unbiased γ 0.5"
    assert arm_name({"dropit": True, "dropit_strategy": "rescaled", "dropit_gamma": 0.9}, markdown=True) \
        == "DropIT `rescaled` γ 0.9"
    assert arm_name({}) == "plain" and arm_name(None) is None


def test_the_answer_figure_draws_each_arms_difference_with_its_interval_and_a_zero_line(study):
    _, summary = study
    fig = figures.answer_figure(summary)
    (pts,) = fig.data
    assert list(pts.y) == ["cnn: mink γ 0.8", "vit: sampled γ 0.9 + int8"]  # plain is the zero line, not a point
    assert list(pts.x) == pytest.approx([-1.1, -1.1])
    half = 4.302653 * 0.1 / 3 ** 0.5  # t(0.975, 2) · sd / sqrt(3)
    assert list(pts.error_x.array) == pytest.approx([half] * 2, abs=1e-4) and list(pts.error_x.arrayminus) == pytest.approx([half] * 2, abs=1e-4)
    (zero,) = [sh for sh in fig.layout.shapes if sh.type == "line"]
    assert zero.x0 == zero.x1 == 0
    assert pts.text[0] == "-1.10  lower by 1.10" and list(pts.marker.symbol) == ["circle", "circle"]  # clear of zero: filled



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


def test_the_notebook_answers_first_then_curves_tables_and_mechanism(study, kernel, tmp_path_factory):
    from test_notebooks import PLOTLY, _execute, _outputs

    out, _ = study
    nb = _execute("claim", tmp_path_factory.mktemp("claim_nb"), kernel, study_dir=str(out))
    figs = _outputs(nb, PLOTLY)
    # the answer, the cnn and vit curves, then both mechanism files of the study
    assert len(figs) == 5 and figs[0]["layout"]["title"]["text"].startswith("Does DropIT cost accuracy?")
    assert [f["layout"]["title"]["text"].split("<br>")[0] for f in figs[-2:]] == [
        "Less noise, or a biased gradient? (mechanism.json)", "Less noise, or a biased gradient? (mechanism_sampled.json)"]
    tables = [o["data"]["text/markdown"] for c in nb.cells for o in c.get("outputs", []) if "text/markdown" in o.get("data", {})]
    assert tables[0].splitlines()[0].startswith("| protocol | arm | seeds | test top-1 %") and "top-5" not in tables[0]
    assert "| top-5 % |" in tables[1] and "| train loss |" in tables[1]
    one = _execute("claim", tmp_path_factory.mktemp("claim_nb2"), kernel, study_dir=str(out),
                   mechanism_json=str(out / "mechanism.json"))
    assert len(_outputs(one, PLOTLY)) == 4  # one mechanism file, as asked


def test_the_notebook_opens_on_the_committed_study(kernel, tmp_path_factory):
    """Run by papermill with its defaults, the first output of the claim notebook is the committed study's answer."""
    from test_notebooks import PLOTLY, _execute

    nb = _execute("claim", tmp_path_factory.mktemp("claim_default"), kernel)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    first = outputs[0]
    assert PLOTLY in first.get("data", {}), first
    fig = first["data"][PLOTLY]
    assert fig["layout"]["title"]["text"].startswith("Does DropIT cost accuracy?")
    committed = json.loads((ROOT / "docs" / "claim" / "claim.json").read_text())
    assert len(fig["data"][0]["y"]) == sum(len(p["arms"]) - 1 for p in committed["protocols"].values())
    assert "cnn: mink γ 0.8" in fig["data"][0]["y"] and "cnn: sampled γ 0.9 + int8" in fig["data"][0]["y"]
    assert f"{len(committed['runs'])} finished runs in docs/claim" in outputs[1].get("text", "")


from test_notebooks import kernel  # noqa: E402,F401  (the session's Jupyter kernel fixture)


def test_write_figures_leaves_small_plotly_files(study):
    from dropit.lab.claim.figures import write_figures

    out, _ = study
    paths = write_figures(out, out / "mechanism.json")
    assert sorted(p.name for p in paths) == ["answer.plotly.json", "curves_cnn.plotly.json", "curves_vit.plotly.json", "mechanism.plotly.json",
                                             "stats.plotly.json"]
    assert all(p.stat().st_size < 200_000 for p in paths)


def test_make_reproduce_runs_a_small_two_arm_one_seed_check_apart_from_the_study(tmp_path, kernel, monkeypatch):
    from lab_fakes import write_cifar100
    from test_notebooks import PLOTLY, _execute, _outputs

    from dropit.lab.reproduce import run as reproduce

    (job,) = [j for j in reproduce.plan("quick", tmp_path) if j.name == "claim"]
    p = job.parameters
    assert p["run_check"] and p["check_arms"] == ["plain", "mink"] and p["check_seeds"] == 1
    assert p["check_max_steps"] == 200 and reproduce.NO_DOWNLOAD in p["check_overrides"]
    assert p["study_dir"].endswith("docs/claim") and p["check_dir"] == str(tmp_path / "claim_check")
    (paper,) = [j for j in reproduce.plan("paper", tmp_path) if j.name == "claim"]
    assert not paper.parameters["run_check"] and paper.parameters["study_dir"].endswith("docs/claim")
    # a folder with no study yet: the notebook says so instead of failing
    (tmp_path / "nb0").mkdir()
    nb0 = _execute("claim", tmp_path / "nb0", kernel, **dict(paper.parameters, study_dir=str(tmp_path / "empty")))
    assert "none yet" in "".join(o.get("text", "") for c in nb0.cells for o in c.get("outputs", []))
    # the check on a fake CIFAR-100 and fewer steps: it trains both arms into check_dir, labelled as a check
    write_cifar100(tmp_path / "data", n_train=200, n_test=100)
    monkeypatch.setenv("DROPIT_DATA", str(tmp_path / "data"))
    small = p["check_overrides"] + ["subset=200", "batch_size=50", "eval_batch_size=50", "threads=1", "cache_batch=8"]
    (tmp_path / "nb").mkdir()
    nb = _execute("claim", tmp_path / "nb", kernel, **dict(p, check_overrides=small, check_max_steps=3, check_val_subset=100,
                                                           study_dir=str(tmp_path / "empty")))
    summary = json.loads((tmp_path / "claim_check" / "claim.json").read_text())
    assert summary["runs"] == ["cnn-mink-seed0", "cnn-plain-seed0"]
    assert summary["protocols"]["cnn"]["arms"]["mink"]["diff_vs_plain"]["top1"]["verdict"] == "one seed: no interval"
    (check,) = _outputs(nb, PLOTLY)
    assert check["layout"]["title"]["text"] == "pipeline check (3 steps, not an answer)"
