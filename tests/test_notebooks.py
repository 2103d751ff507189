"""The notebooks: committed clean, parameterised, and run end to end by papermill.

Each notebook runs on a real Jupyter kernel of this test environment (a
kernelspec for ``sys.executable`` registered in a temporary folder) with smoke
parameters (tiny models, a few steps, small subsets), and the test checks what
it wrote: files, table rows and plotly figures in the output notebook. The
executed notebooks land in one results folder that the last test turns into
``tables.md`` and ``report.html``.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
from dropit.lab.paper import PAPER_ROWS
import pytest

from scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NAMES = ("quickstart", "explore", "cifar100", "imagenet", "iclr", "memory", "claim")
PLOTLY = "application/vnd.plotly.v1+json"
TINY = ["subset=200", "val_subset=100", "batch_size=50", "max_steps=2", "cache_batch=4", "checkpoint=false", "threads=2"]


def _generator():
    return load_script("notebooks/make_notebooks.py")


# ------------------------------------------------------------------ static checks


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs_and_has_parameters(name):
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), f"{name} carries outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters'"
    # papermill can read every assignment of the parameters cell
    from papermill.translators import PythonTranslator

    assigned = [line.split("=")[0].strip() for line in tagged[0].source.splitlines() if "=" in line and not line.startswith("#")]
    assert [p.name for p in PythonTranslator.inspect(tagged[0])] == assigned
    # thin cells: no cell grows past a few lines of logic
    assert max(len([l for l in c.source.splitlines() if l.strip() and not l.strip().startswith("#")]) for c in code) <= 12


def test_every_tracked_notebook_is_checked_for_outputs():
    """The outputs check above covers every notebook git tracks (a new one must join NAMES)."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files", "notebooks/*.ipynb"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    assert sorted(Path(p).stem for p in tracked.stdout.split()) == sorted(NAMES)


def test_notebooks_name_the_kernel_that_setup_and_reproduce_register():
    """JupyterLab falls back silently to another kernel when the named one is missing: name the one we register."""
    from dropit.lab.reproduce import run as reproduce

    for name in NAMES:
        spec = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4).metadata["kernelspec"]
        assert spec["name"] == reproduce.KERNEL_NAME, name
    makefile = (ROOT / "Makefile").read_text()
    assert f"ipykernel install --sys-prefix --name {reproduce.KERNEL_NAME}" in makefile
    assert re.search(r"^test: .*\$\(KERNEL\)", makefile, re.M) and re.search(r"^test-e2e: .*\$\(KERNEL\)", makefile, re.M)


def test_make_lab_starts_jupyterlab_on_the_notebooks_with_the_kits_kernel():
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make not found")
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lab: .*\$\(KERNEL\)", makefile, re.M)  # the "dropit" kernel is registered first
    dry = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    (line,) = [l for l in dry.splitlines() if "jupyter lab" in l]
    assert "--ServerApp.root_dir=notebooks" in line
    assert ("--allow-root" in line.split()) == (os.geteuid() == 0)  # jupyter lab refuses root without it


def test_notebooks_match_their_generator(tmp_path):
    written = _generator().write_all(tmp_path)
    assert sorted(p.stem for p in written) == sorted(NAMES)
    for p in written:
        assert p.read_text() == (NB_DIR / p.name).read_text(), f"{p.name}: rerun notebooks/make_notebooks.py"


def test_reproduce_passes_only_parameters_the_notebooks_declare(tmp_path):
    from papermill.translators import PythonTranslator

    from dropit.lab.reproduce import run as reproduce
    from dropit.lab.reproduce import rows

    for preset in ("quick", "paper"):
        jobs = reproduce.plan(preset, tmp_path)
        assert {j.name for j in jobs} >= {"memory", "cifar100", "imagenet", "iclr", "quickstart"}
        for job in jobs:
            nb = nbformat.read(NB_DIR / f"{job.name}.ipynb", as_version=4)
            cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
            declared = {p.name for p in PythonTranslator.inspect(cell)}
            assert set(job.parameters) <= declared, (job.name, set(job.parameters) - declared)
        for table in ("cifar100", "imagenet", "iclr"):
            for f in rows.table_params(table, preset):
                assert (ROOT / f).is_file(), f


# ------------------------------------------------------------------ papermill runs


def _data_root() -> str:
    for p in (os.environ.get("DROPIT_DATA"), ROOT.parent / "shared" / "data", ROOT / "data"):
        if p and (Path(p) / "cifar-100-python" / "train").is_file():
            return str(Path(p).resolve())
    pytest.skip("CIFAR-100 not found (set DROPIT_DATA)")


@pytest.fixture(scope="session")
def kernel(tmp_path_factory):
    """A kernelspec for this interpreter, visible to jupyter_client through JUPYTER_PATH."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("kernel")
    install(kernel_name="dropit-test", prefix=str(prefix))
    spec = prefix / "share" / "jupyter" / "kernels" / "dropit-test" / "kernel.json"
    data = json.loads(spec.read_text())
    data["argv"][0] = sys.executable
    spec.write_text(json.dumps(data))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(prefix / "share" / "jupyter"), old]))
    yield "dropit-test"
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


@pytest.fixture(scope="session")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


def _execute(name: str, results: Path, kernel: str, **parameters) -> nbformat.NotebookNode:
    import papermill as pm

    out = results / f"{name}.ipynb"
    pm.execute_notebook(
        str(NB_DIR / f"{name}.ipynb"), str(out), parameters=parameters, kernel_name=kernel,
        cwd=str(NB_DIR), progress_bar=False, execution_timeout=300, store_widget_state=False,
    )
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert out.stat().st_size < 2_000_000  # figures as JSON, no embedded plotly.js
    return nb


def _outputs(nb, mime: str) -> list:
    return [o["data"][mime] for c in nb.cells for o in c.get("outputs", []) if mime in o.get("data", {})]


def _runs_traces(fig: dict) -> list:
    """The bench figure's run traces (its empty per-panel placeholders left out)."""
    return [t for t in fig["data"] if not (t.get("meta") or {}).get("placeholder")]


def _text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.output_type == "stream")


@pytest.mark.slow
def test_quickstart_runs_headless(kernel, results, tmp_path):
    mechanism = tmp_path / "mechanism.json"  # the claim study's measurement, two steps at two gammas
    mechanism.write_text(json.dumps({"rows": [
        {"step": step, "gamma": g, "noise_plain": 0.5, "noise_dropit": 0.5 - g / 4, "bias": g / 5, "bias_rel": g,
         "mse_plain": 0.45, "mse_dropit": 0.45 - g / 10} for step in (50, 400) for g in (0.5, 0.9)]}))
    nb = _execute("quickstart", results, kernel, interactive=False, gammas=[0.0, 0.5, 0.9],
                  strategies=["mink", "random"], resnet_model="resnet_mini", vit_model="vit_tiny", memory_batch=2,
                  mechanism_json=str(mechanism))
    figs = _outputs(nb, PLOTLY)
    # heatmap, histogram, gamma curves, the mechanism, cache vs gamma, two per-layer bar charts
    assert len(figs) == 7
    # the mechanism: per step, bias / ‖g‖ in percent, and DropIT's noise over plain's ((0.5 - g / 4) / 0.5)
    assert len(figs[3]["data"]) == 2 * 2 and figs[3]["data"][0]["y"] == pytest.approx([50.0, 90.0])
    assert figs[3]["data"][1]["y"] == pytest.approx([0.75, 0.55])
    assert not _outputs(nb, "application/vnd.jupyter.widget-view+json")  # no widgets without a front end
    heat = figs[0]["data"]
    assert sum(v == 0 for row in heat[1]["z"] for v in row) > sum(v == 0 for row in heat[0]["z"] for v in row)
    assert "kept 10.0%" in _text(nb)


@pytest.mark.slow
def test_explore_runs_one_training_through_the_panel(kernel, results):
    _data_root()
    out_root = results / "explore"
    nb = _execute("explore", results, kernel, interactive=False, out_root=str(out_root),
                  overrides=[f"data_dir={_data_root()}", *TINY])
    (run,) = list(out_root.glob("*/metrics.json"))
    m = json.loads(run.read_text())
    assert m["status"] == "done" and m["final"]["top1"] is not None
    (fig,) = _outputs(nb, PLOTLY)  # the bench figure, kept as a static copy
    traces = _runs_traces(fig)
    assert traces[0]["x"] == [1, 2] and traces[0]["name"] == "#1 resnet_mini · DropIT γ=0.9 mink"
    (table,) = _outputs(nb, "text/markdown")
    assert table.count("\n") == 4 and "| #1 resnet_mini · DropIT γ=0.9 mink |" in table
    assert " ± " in table  # the top-1 with its standard error


@pytest.mark.slow
def test_explore_sweeps_headless_from_a_parameter(kernel, tmp_path):
    out_root = tmp_path / "sweep"
    nb = _execute("explore", tmp_path, kernel, interactive=False, out_root=str(out_root), sweep_gammas=[0, 0.9],
                  overrides=[f"data_dir={_data_root()}", *TINY])
    # γ 0 is the plain run: not trained again
    assert sorted(p.parent.name for p in out_root.glob("*/metrics.json")) == [
        "01_resnet_mini_cifar100", "02_resnet_mini_cifar100_dropit0.9_mink"]
    runs, summary = _outputs(nb, PLOTLY)
    assert len(_runs_traces(runs)) == 8  # two runs side by side, four traces each
    # DropIT's kept MiB and top-1 at γ 0.9, then the plain run (standing for γ 0) beside the γ axis in each panel
    assert [t["x"] for t in summary["data"]] == [[0.9], [0.9], [-0.1], [-0.1]]
    assert len(summary["layout"]["shapes"]) == 3  # plain's dashed lines and its noise band
    (table,) = _outputs(nb, "text/markdown")
    assert table.count("\n") == 5 and "#1 resnet_mini · plain" in table and "| 1.000 |" in table
    assert "top-1 − plain" in table and "kept vs plain" in table


@pytest.mark.slow
def test_explore_interactive_shows_the_panel_and_waits_for_run(kernel, tmp_path):
    out_root = tmp_path / "explore"
    nb = _execute("explore", tmp_path, kernel, interactive=True, out_root=str(out_root), overrides=TINY)
    (view,) = _outputs(nb, "application/vnd.jupyter.widget-view+json")
    assert view["model_id"]
    assert not out_root.exists() and not _outputs(nb, PLOTLY)  # nothing runs until "run" is pressed


@pytest.mark.slow
@pytest.mark.parametrize("table,extra,filled_id", [
    ("cifar100", [], "cifar100_resnet18_dropit"),
    ("imagenet", ["dataset=imagenette", "image_size=32"], "imagenet_resnet18_dropit"),
    ("iclr", ["model=deit_mini", "dropit_gamma=0.6", "dataset=imagenette", "image_size=32"], "iclr_imagenet_deit_tiny_dropit06"),
])
def test_table_notebook_writes_rows_metrics_and_figures(kernel, results, table, extra, filled_id):
    data = _data_root()
    if "dataset=imagenette" in extra and not (Path(data) / "imagenette" / "train").is_dir():
        pytest.skip("imagenette not found")
    runs, figures = results / "runs", results / "figures"
    nb = _execute(table, results, kernel, table=table, params_files=["params/smoke.yaml"],
                  overrides=[f"data_dir={data}", *TINY, *extra, f"label=smoke-{table}"],
                  out_root=str(runs / table), figures_dir=str(figures))
    metrics = json.loads((runs / table / "smoke" / "metrics.json").read_text())
    assert metrics["config"]["dataset"] == ("cifar100" if table == "cifar100" else "imagenette")
    rows = json.loads((figures / f"{table}_table.json").read_text())
    assert len(rows) == (8 if table == "iclr" else 4)
    (filled,) = [r for r in rows if r["top1"] is not None]
    assert filled["id"] == filled_id and filled["ran"].startswith(f"smoke-{table}:")
    assert [r["ran"] for r in rows].count("not run") == len(rows) - 1
    md = "".join(_outputs(nb, "text/markdown"))
    assert "| Model |" in md and f"smoke-{table}" in md
    assert (figures / f"{table}_training.plotly.json").is_file() and len(_outputs(nb, PLOTLY)) == 1


@pytest.mark.slow
def test_memory_notebook_writes_the_cache_column(kernel, results):
    out = results / "memory"
    nb = _execute("memory", results, kernel, batch_size=2, out_dir=str(out), interactive=False,
                  explore_models=["resnet_mini", "vit_tiny"], frontier_rounds=1,
                  frontier_configs="plain,DropIT + int8")
    column = json.loads((out / "cache_column.json").read_text())
    assert [r["paper_mb"] for r in column] == [648, 598, 20290, 16052, 2826, 2600, 20290, 16056]
    assert all(r["kept_mb"] > 0 for r in column)
    pairs = [f"{r['table']}_{r['model_name']}" for r in PAPER_ROWS if r["dropit"]]
    assert {p.name for p in out.glob("per_layer_*.json")} == {f"per_layer_{m}{ext}" for m in pairs for ext in (".json", ".plotly.json")}
    layers = json.loads((out / "per_layer_cifar100_resnet18_cifar.json").read_text())
    plain, dropped = layers.values()
    assert sum(r["bytes"] for r in dropped) < sum(r["bytes"] for r in plain)
    assert len(_outputs(nb, PLOTLY)) == 1 + len(pairs) + 2 + 1 + 1  # + per-layer with quantize (2 models), frontier, plan
    planned = json.loads((out / "plan.json").read_text())
    assert planned[0]["name"] == "plain" and min(r["saved_ratio"] for r in planned) < 0.5
    frontier = json.loads((out / "frontier.json").read_text())
    assert [r["config"] for r in frontier] == ["plain", "DropIT + int8"] and frontier[1]["kept_ratio"] < 0.5
    assert "| 20290 |" in "".join(_outputs(nb, "text/markdown"))


@pytest.mark.slow
def test_report_from_the_executed_notebooks(results):
    from dropit.lab.reproduce import report

    if not (results / "quickstart.ipynb").is_file():
        pytest.skip("needs the notebook runs above")
    tables, html = report.build(results)
    md = tables.read_text()
    assert "| 648 |" in md and "| 16056 |" in md
    text = html.read_text()
    assert "<script src=" not in text and "Figures from quickstart.ipynb" in text
