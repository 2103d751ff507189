"""The interactive notebooks in a real browser: JupyterLab driven by headless Chromium.

What papermill cannot see: that the widgets and the plotly FigureWidget render in
JupyterLab (their front-end extensions load), that the γ slider reaches the kernel,
and that the live figure's traces grow *while* training runs. Each test starts its
own JupyterLab on a temp copy of ``notebooks/`` (see ``conftest.py``), runs a
notebook with Run All from the menu, works its widgets, reads the plotly graph
divs' ``data`` in the page, and saves screenshots.

    .venv/bin/python -m pytest tests/e2e -m e2e -v      # needs chromium + playwright

``test_live_figure_check_fails_without_live_updates`` runs explore with
``DROPIT_LIVE_PLOTS=0`` (the live callback then draws only once, at the end) and
asserts that the growth check reports no growth: the check can fail.
"""
from __future__ import annotations

import dataclasses
import os
import re
import time
from pathlib import Path

import pytest


def browser_test(fn):
    """Mark a test as needing the browser stack (skipped without it, see conftest.py)."""
    return pytest.mark.e2e(pytest.mark.slow(fn))


ROOT = Path(__file__).resolve().parents[2]
MAX_STEPS = 40  # explore's run: 40 steps of a tiny ResNet, figure flushed every 5 steps
TRACES_JS = """() => ({
    traces: Array.from(document.querySelectorAll('.js-plotly-plot'))
                 .map(gd => (gd.data || []).map(t => (t.x || []).length)),
    status: Array.from(document.querySelectorAll('.widget-html')).map(e => e.innerText).join('\\n'),
})"""
TITLES_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .map(gd => ((gd.layout || {}).title || {}).text || '')"""


def _data_root() -> str:
    for p in (os.environ.get("DROPIT_DATA"), ROOT.parent / "shared" / "data", ROOT / "data"):
        if p and (Path(p) / "cifar-100-python" / "train").is_file():
            return str(Path(p).resolve())
    pytest.skip("CIFAR-100 not found (set DROPIT_DATA)")


def _explore_parameters(out_root: Path) -> dict:
    tiny = ["subset=1000", "val_subset=100", "batch_size=20", f"max_steps={MAX_STEPS}",
            "cache_batch=4", "checkpoint=false", "threads=1", "log_every=1000"]
    return {"interactive": True, "params_file": str(ROOT / "params" / "smoke.yaml"),
            "out_root": str(out_root), "overrides": [f"data_dir={_data_root()}", *tiny]}


QUICKSTART = {"interactive": True, "gammas": [0.0, 0.5, 0.9], "strategies": ["mink", "random"],
              "resnet_model": "resnet_mini", "vit_model": "vit_tiny", "memory_batch": 2}


# ------------------------------------------------------------------ page helpers


def open_and_run_all(context, lab, name: str, timeout: float = 150):
    """Open ``name``.ipynb, Run All from the Run menu, wait until every code cell ran."""
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(lab.page_url(f"{name}.ipynb"))
    page.locator(".jp-NotebookPanel .jp-CodeCell").first.wait_for()
    _wait_kernel_idle(lab, timeout=60)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    prompts = page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        texts = prompts.all_inner_texts()
        if texts and all(re.fullmatch(r"\[\d+\]:", t.strip()) for t in texts):
            break
        time.sleep(0.5)
    else:
        shot = lab.root.parent / f"{name}-timeout.png"
        page.screenshot(path=str(shot))
        pytest.fail(f"{name}: cells did not all run within {timeout:.0f} s ({shot}): {texts}\n{lab.log_tail()}")
    errors = page.locator(".jp-OutputArea-output", has_text="Traceback").all_inner_texts()
    assert not errors, f"{name}: a cell failed:\n" + "\n".join(errors)[-3000:]
    return page


def _wait_kernel_idle(lab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kernels = lab.api("kernels")
        if kernels and all(k["execution_state"] == "idle" for k in kernels):
            return
        time.sleep(0.5)
    pytest.fail(f"no idle kernel within {timeout:.0f} s: {lab.api('kernels')}\n{lab.log_tail()}")


def drag_slider(page, label: str, fraction: float) -> float:
    """Drag the ipywidgets slider described ``label`` to ``fraction`` of its track; its new value."""
    slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=label))
    assert slider.count() == 1, f"expected one slider {label!r}, found {slider.count()}"
    slider.scroll_into_view_if_needed()
    readout = slider.locator(".widget-readout")
    before = readout.inner_text()
    track = slider.locator(".noUi-target").bounding_box()
    handle = slider.locator(".noUi-handle").bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + fraction * track["width"], track["y"] + track["height"] / 2, steps=8)
    page.mouse.up()
    page.wait_for_function("([el, old]) => el.innerText !== old", arg=[readout.element_handle(), before])
    return float(readout.inner_text())


@dataclasses.dataclass
class Sample:
    """One look at the page: points per trace of each plotly figure, and the panel's status."""

    t: float
    traces: list[list[int]]
    status: str

    @property
    def training(self) -> bool:
        return self.status.startswith("training")

    @property
    def finished(self) -> bool:
        return self.status.startswith(("done", "stopped")) or "Traceback" in self.status


def grew_while_training(samples: list[Sample], figure: int = 0, trace: int = 0) -> bool:
    """True when the trace showed at least two different non-zero point counts during training."""
    seen = {s.traces[figure][trace] for s in samples if s.training and len(s.traces) > figure}
    return len(seen - {0}) >= 2


def _summary(samples: list[Sample]) -> list:
    return [(round(s.t, 1), s.traces[0][0] if s.traces else None, s.status[:8]) for s in samples]


def watch_training(page, timeout: float, on_sample=None) -> list[Sample]:
    """Sample the page every ~0.2 s until the panel says done/stopped (or ``timeout``)."""
    samples, t0 = [], time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = page.evaluate(TRACES_JS)
        samples.append(Sample(time.monotonic() - t0, got["traces"], got["status"].strip()))
        if on_sample is not None:
            on_sample(samples[-1])
        if samples[-1].finished:
            return samples
        time.sleep(0.2)
    pytest.fail(f"training did not finish within {timeout:.0f} s; last status: {samples[-1].status!r}")


def run_explore(browser, lab, screenshots: Path, tag: str):
    """Run All in explore, move γ, press run and watch the live figure; (samples, γ, page)."""
    page = open_and_run_all(browser, lab, "explore")
    assert page.locator(".js-plotly-plot").count() == 1, "the live FigureWidget did not render"
    assert page.locator(".js-plotly-plot .main-svg").first.is_visible()
    assert page.evaluate(TRACES_JS)["traces"] == [[0, 0, 0]]  # three empty lines before run
    gamma = drag_slider(page, "γ", 0.5)
    assert 0.3 < gamma < 0.7
    run = page.locator("button.widget-button", has_text=re.compile(r"^\s*run\s*$"))
    page.keyboard.press("Control+b")  # hide the file browser: a wider notebook in the screenshots
    page.locator(".jp-OutputArea-output", has=run).evaluate("el => el.scrollIntoView({block: 'center'})")
    page.screenshot(path=str(screenshots / f"explore_{tag}_before_run.png"))
    run.click()

    shot = {"taken": False}

    def mid_training_screenshot(s: Sample):
        if not shot["taken"] and s.training and MAX_STEPS // 2 <= s.traces[0][0] < MAX_STEPS:
            page.screenshot(path=str(screenshots / f"explore_{tag}_mid_training.png"))
            shot["taken"] = True

    samples = watch_training(page, timeout=150, on_sample=mid_training_screenshot)
    page.screenshot(path=str(screenshots / f"explore_{tag}_done.png"))
    return samples, gamma, page


# ------------------------------------------------------------------ tests


@browser_test
def test_quickstart_widgets_render_and_slider_redraws(browser, start_lab, screenshots):
    lab = start_lab(parameters={"quickstart": QUICKSTART})
    page = open_and_run_all(browser, lab, "quickstart", timeout=240)
    titles = page.evaluate(TITLES_JS)
    assert len(titles) >= 8, titles  # 6 static figures + the explorer's heatmap and histogram
    assert titles.count("|x| at γ = 0.9 (mink)") == 2, titles  # static and live histogram agree
    gamma = drag_slider(page, "γ", 0.3)
    want = f"|x| at γ = {gamma:g} (mink)"
    page.wait_for_function(f"() => ({TITLES_JS})().includes({want!r})", timeout=60_000)
    page.locator(".widget-slider").scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "quickstart_gamma_explorer.png"))
    assert page.evaluate(TITLES_JS).count("|x| at γ = 0.9 (mink)") == 1  # the static one stays


@browser_test
def test_explore_live_figure_grows_while_training(browser, start_lab, screenshots, tmp_path):
    out_root = tmp_path / "runs"
    lab = start_lab(parameters={"explore": _explore_parameters(out_root)})
    samples, gamma, page = run_explore(browser, lab, screenshots, "live")
    final = samples[-1]
    assert final.status.startswith("done"), final.status
    assert f"dropit{gamma:g}_" in page.locator(".widget-html").inner_text()  # γ from the slider reached the kernel
    (run_dir,) = out_root.iterdir()
    assert run_dir.name.endswith(f"dropit{gamma:g}_mink") and (run_dir / "metrics.json").is_file()
    counts = [s.traces[0][0] for s in samples]
    assert counts == sorted(counts), f"points went backwards: {counts}"
    assert final.traces[0][0] == MAX_STEPS and final.traces[0][1:] == [1, 1], final.traces
    assert grew_while_training(samples), f"no growth seen while training: {_summary(samples)}"
    assert (screenshots / "explore_live_mid_training.png").is_file()


@browser_test
def test_live_figure_check_fails_without_live_updates(browser, start_lab, screenshots, tmp_path):
    """With live updates off the figure fills only at the end: the growth check must say so."""
    out_root = tmp_path / "runs"
    lab = start_lab(parameters={"explore": _explore_parameters(out_root)}, env={"DROPIT_LIVE_PLOTS": "0"})
    samples, _, _ = run_explore(browser, lab, screenshots, "frozen")
    assert samples[-1].status.startswith("done"), samples[-1].status
    assert any(s.training for s in samples), "never saw the run in progress"
    assert samples[-1].traces[0][0] == MAX_STEPS  # the final flush still draws everything ...
    assert not grew_while_training(samples), _summary(samples)  # ... but nothing grew while training ran


def test_growth_check_on_recorded_samples():
    """The check itself, no browser: growth needs two different non-zero counts during training."""
    def run(*counts, end=40):
        return [Sample(i, [[c, 0, 0]], "training ...") for i, c in enumerate(counts)] + [Sample(99, [[end, 1, 1]], "done")]

    assert grew_while_training(run(0, 5, 5, 10))
    assert not grew_while_training(run(0, 0, 0))        # drawn only at the end
    assert not grew_while_training(run(0, 40, 40))      # drawn once, all at once
    assert not grew_while_training([Sample(0, [], "training ...")])  # no figure at all
