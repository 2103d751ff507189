"""The interactive notebooks in a real browser: JupyterLab driven by headless Chromium.

What papermill cannot see: that the widgets and the plotly FigureWidget render in
JupyterLab (their front-end extensions load), that the γ slider reaches the kernel,
and that the live figure's traces grow *while* training runs. Each test starts its
own JupyterLab on a temp copy of ``notebooks/`` (see ``conftest.py``), runs a
notebook with Run All from the menu, works its widgets, reads the plotly graph
divs' ``data`` in the page, and saves screenshots.

    .venv/bin/python -m pytest tests/e2e -m e2e -v      # needs chromium + playwright

``test_seeds_are_seeds_through_run_sweep_stop_and_clear`` replays issue 32's sequence (run, a sweep
that repeats run #1's seed, a run stopped early) and reads the table's seed counts: a rerun and a
stopped run are shown, never pooled; bad sweep lists are refused before any run; clear leaves an
empty bench with its axes reset and no sweep panel. ``test_the_claim_notebook_opens_on_its_answer``
checks that the claim notebook's first output is the committed study's chart.

Explore is the lab bench: ``test_explore_live_figure_grows_while_training`` watches
one run draw while it trains; ``test_runs_overlay_fill_the_table_and_a_sweep_draws_its_summary``
presses run twice (the second run's traces join the first's, which stay as they were,
and the runs table fills), clears the bench, and runs a γ sweep, which draws its
summary figure; its mid-sweep screenshot is the README's ``docs/explore.png``.

Before any run the empty bench must fill its output area with all three panels
(``empty_bench_problem``); the overlay test also checks that γ and the strategy are
disabled with DropIT off, that a missing dataset is one escaped line with its
traceback folded in ``<details>``, that two short runs whose top-1s differ by less
than their noise are marked "within noise", and that the sweep summary shows the plain
run apart from γ = 0. Every notebook must open on the kernel it names
(``kernel_fallback``): JupyterLab would otherwise fall back to another one silently.

Each check is shown to fail when the behaviour it checks is switched off:
``test_live_figure_check_fails_without_live_updates`` runs explore with
``DROPIT_LIVE_PLOTS=0`` (the live callback then draws only once, at the end) and
asserts that the growth check reports no growth;
``test_overlay_check_fails_when_runs_replace_each_other`` runs explore with the
notebook parameter ``overlay=False`` (each run clears the figure first) and asserts
that the overlay check reports no overlay;
``test_a_notebook_naming_a_missing_kernel_is_caught`` opens a notebook naming an
unregistered kernel and asserts that the kernel check reports it;
``test_empty_bench_check_on_recorded_layouts`` feeds the empty-bench check the issue's
broken layout.
"""
from __future__ import annotations

import dataclasses
import json
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
                 .map(gd => (gd.data || []).filter(t => !(t.meta && t.meta.placeholder)).map(t => (t.x || []).length)),
    status: (document.querySelector('.dropit-status') || {innerText: ''}).innerText,
    table_rows: document.querySelectorAll('table.dropit-runs tr.dropit-run').length,
})"""
WIDTH_JS = """() => {
    const gd = document.querySelector('.js-plotly-plot');
    return {figure: gd.querySelector('.main-svg').getBoundingClientRect().width,  // what plotly drew
            area: gd.closest('.jp-OutputArea-output').getBoundingClientRect().width,
            panels: Array.from(gd.querySelectorAll('.draglayer .nsewdrag')).map(el => el.getBoundingClientRect().width),
            titles: Array.from(gd.querySelectorAll('.annotation-text')).map(el => {
                const r = el.getBoundingClientRect(); return [r.left, r.right]; })};
}"""
STATUS_JS = """() => {
    const s = document.querySelector('.dropit-status');
    const d = s.querySelector('details');
    return {text: s.innerText, html: s.innerHTML, line: (s.querySelector('.dropit-error') || {innerText: ''}).innerText,
            details: d ? {open: d.open, visible: d.querySelector('pre').checkVisibility()} : null};
}"""
NOISE_JS = """() => Array.from(document.querySelectorAll('table.dropit-runs td.dropit-noise')).map(td => td.innerText)"""
CONTROLS_JS = """() => {
    const box = label => Array.from(document.querySelectorAll('.widget-inline-hbox'))
        .find(el => (el.querySelector('.widget-label') || {}).innerText === label);
    return {gamma: box('γ').querySelector('.widget-readout').contentEditable === 'false'
                   && box('γ').querySelector('.noUi-target').hasAttribute('disabled'),
            strategy: box('strategy').querySelector('select').disabled};
}"""
SHAPES_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .map(gd => ((gd.layout || {}).shapes || []).length)"""
TITLES_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .map(gd => ((gd.layout || {}).title || {}).text || '')"""
ANNOTATIONS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .map(gd => ((gd.layout || {}).annotations || []).map(a => a.text || ''))"""


def _data_root() -> str:
    for p in (os.environ.get("DROPIT_DATA"), ROOT.parent / "shared" / "data", ROOT / "data"):
        if p and (Path(p) / "cifar-100-python" / "train").is_file():
            return str(Path(p).resolve())
    pytest.skip("CIFAR-100 not found (set DROPIT_DATA)")


def _explore_parameters(out_root: Path, steps: int = MAX_STEPS, **extra) -> dict:
    tiny = ["subset=1000", "val_subset=100", "batch_size=20", f"max_steps={steps}",
            "cache_batch=4", "checkpoint=false", "threads=1", "log_every=1000"]
    return {"interactive": True, "params_file": str(ROOT / "params" / "smoke.yaml"),
            "out_root": str(out_root), "overrides": [f"data_dir={_data_root()}", *tiny], **extra}


QUICKSTART = {"interactive": True, "gammas": [0.0, 0.5, 0.9], "strategies": ["mink", "random"],
              "resnet_model": "resnet_mini", "vit_model": "vit_tiny", "memory_batch": 2}


# ------------------------------------------------------------------ page helpers


def open_and_run_all(context, lab, name: str, timeout: float = 150, *, hide_files: bool = False):
    """Open ``name``.ipynb (``hide_files``: close the file browser first), Run All, wait until every code cell ran."""
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(lab.page_url(f"{name}.ipynb"))
    page.locator(".jp-NotebookPanel .jp-CodeCell").first.wait_for()
    if hide_files:  # a wider notebook for the screenshots, before the figures are drawn
        page.keyboard.press("Control+b")
    _wait_kernel_idle(lab, timeout=60)
    fell_back = kernel_fallback(lab, name)
    assert fell_back is None, fell_back
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


def kernel_fallback(lab, name: str) -> str | None:
    """None when ``name``.ipynb runs on the kernel it names; else what JupyterLab did instead."""
    import nbformat

    want = nbformat.read(lab.root / f"{name}.ipynb", as_version=4).metadata["kernelspec"]["name"]
    sessions = [x for x in lab.api("sessions") if x.get("path", "").endswith(f"{name}.ipynb")]
    got = sessions[0]["kernel"]["name"] if sessions and sessions[0].get("kernel") else None
    if got == want:
        return None
    return (f"{name}.ipynb names the kernel {want!r} but JupyterLab started {got!r}: register it in this environment "
            f"(make test does: python -m ipykernel install --sys-prefix --name {want})")


def _wait_kernel_idle(lab, timeout: float, *, dialog=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kernels = lab.api("kernels")
        except OSError:  # the server may answer 500 while a kernel is still starting
            time.sleep(0.5)
            continue
        if kernels and all(k["execution_state"] == "idle" for k in kernels):
            return
        if dialog is not None and dialog.locator(".jp-Dialog").count():  # "Select Kernel": no silent start
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
    traces: list[list[int]]  # per figure, the point count of each trace
    status: str
    table_rows: int = 0  # rows of the runs table

    def points(self, figure: int = 0, trace: int = 0) -> int:
        """Points of one trace; 0 where the figure or the trace is not there (yet)."""
        traces = self.traces[figure] if len(self.traces) > figure else []
        return traces[trace] if len(traces) > trace else 0

    @property
    def training(self) -> bool:
        return self.status.startswith("training")

    @property
    def finished(self) -> bool:
        return self.status.startswith(("done", "stopped", "failed"))


def grew_while_training(samples: list[Sample], figure: int = 0, trace: int = 0) -> bool:
    """True when the trace showed at least two different non-zero point counts during training."""
    seen = {s.points(figure, trace) for s in samples if s.training}
    return len(seen - {0}) >= 2


def overlaid(before: Sample, after: Sample, per_run: int = 4) -> bool:
    """True when the bench figure gained one run's traces and the earlier runs' traces kept their points."""
    old = before.traces[0] if before.traces else []
    new = after.traces[0] if after.traces else []
    return bool(old) and len(new) == len(old) + per_run and new[:len(old)] == old


def _summary(samples: list[Sample]) -> list:
    return [(round(s.t, 1), s.points(), s.status[:8]) for s in samples]


def watch_training(page, timeout: float, on_sample=None) -> list[Sample]:
    """Sample the page every ~0.2 s until the panel says done/stopped (or ``timeout``)."""
    samples, t0 = [], time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = page.evaluate(TRACES_JS)
        samples.append(Sample(time.monotonic() - t0, got["traces"], got["status"].strip(), got["table_rows"]))
        if on_sample is not None:
            on_sample(samples[-1])
        if samples[-1].finished:
            return samples
        time.sleep(0.2)
    pytest.fail(f"training did not finish within {timeout:.0f} s; last status: {samples[-1].status!r}")


def button(page, label: str):
    return page.locator("button.widget-button", has_text=re.compile(rf"^\s*{label}\s*$"))


def press_and_watch(page, label: str, timeout: float = 150, on_sample=None) -> list[Sample]:
    """Press ``label`` (run or sweep), wait until the status says training, watch until done/stopped."""
    button(page, label).click()
    page.wait_for_function("() => (document.querySelector('.dropit-status') || {innerText: ''})"
                           ".innerText.startsWith('training')", timeout=30_000)
    return watch_training(page, timeout=timeout, on_sample=on_sample)


def open_explore(browser, lab, screenshots: Path, tag: str):
    """Run All in explore, check the empty bench figure, hide the file browser; the page."""
    page = open_and_run_all(browser, lab, "explore", hide_files=True)
    assert page.locator(".js-plotly-plot").count() == 1, "the live FigureWidget did not render"
    assert page.locator(".js-plotly-plot .main-svg").first.is_visible()
    assert page.evaluate(TRACES_JS)["traces"] == [[]]  # no run yet: no traces
    page.locator(".jp-OutputArea-output", has=button(page, "run")).evaluate("el => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(5000)  # BenchPanel asks plotly to measure its width again up to 4 s after it is shown
    layout = page.evaluate(WIDTH_JS)
    problem = empty_bench_problem(layout)
    page.screenshot(path=str(screenshots / f"explore_{tag}_before_run.png"))
    assert problem is None, problem
    return page


def empty_bench_problem(layout: dict) -> str | None:
    """None when the bench figure fills its output area with three panels of a fair share each, titles apart."""
    fig, area, panels = layout["figure"], layout["area"], layout["panels"]
    if fig < 0.9 * area:
        return f"the figure is {fig:.0f} px wide in an output area of {area:.0f} px"
    if len(panels) != 3 or min(panels) < 0.2 * fig:
        return f"panels {[round(p) for p in panels]} px wide in a figure of {fig:.0f} px (want 3, each >= 20%)"
    titles = sorted(layout["titles"])
    if any(right > left for (_, right), (left, _) in zip(titles, titles[1:])):
        return f"panel titles overlap: {titles}"
    return None


def run_explore(browser, lab, screenshots: Path, tag: str):
    """Run All in explore, move γ, press run and watch the live figure; (samples, γ, page)."""
    page = open_explore(browser, lab, screenshots, tag)
    gamma = drag_slider(page, "γ", 0.5)
    assert 0.3 < gamma < 0.7
    button(page, "run").click()

    shot = {"taken": False}

    def mid_training_screenshot(s: Sample):
        if not shot["taken"] and s.training and MAX_STEPS // 2 <= s.points() < MAX_STEPS:
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
    assert final.status.startswith(f"done: #1 resnet_mini · DropIT γ={gamma:g} mink: top-1 "), final.status  # γ from the slider
    assert str(tmp_path) not in final.status  # the status names the run, not its folder
    (run_dir,) = out_root.iterdir()
    assert run_dir.name.endswith(f"dropit{gamma:g}_mink") and (run_dir / "metrics.json").is_file()
    assert any(re.search(r": step \d+/40, \d+:\d\d elapsed, (about \d+:\d\d left|estimating)", s.status)
               for s in samples if s.training), _summary(samples)
    counts = [s.points() for s in samples]
    assert counts == sorted(counts), f"points went backwards: {counts}"
    # loss, running train top-1 and kept bytes per step; validation top-1 once (one epoch)
    assert final.traces[0] == [MAX_STEPS, MAX_STEPS, 1, MAX_STEPS], final.traces
    assert final.table_rows == 1
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
    assert samples[-1].points() == MAX_STEPS  # the final flush still draws everything ...
    assert not grew_while_training(samples), _summary(samples)  # ... but nothing grew while training ran


def select(page, label: str, value: str) -> None:
    """Pick ``value`` in the ipywidgets dropdown described ``label``."""
    box = page.locator(".widget-dropdown", has=page.locator(".widget-label", has_text=re.compile(rf"^{label}$")))
    box.locator("select").select_option(value)


def missing_dataset_shows_one_escaped_line(page) -> dict:
    """Run on a dataset that is not there; the status once it failed (see STATUS_JS)."""
    select(page, "dataset", "imagenet")
    button(page, "run").click()
    page.wait_for_function("() => (document.querySelector('.dropit-status') || {innerText: ''})"
                           ".innerText.startsWith('failed')", timeout=60_000)
    wait_until_idle(page)
    return page.evaluate(STATUS_JS)


def wait_until_idle(page) -> None:
    """Until the training thread has ended: the run button is enabled again."""
    page.wait_for_function("() => Array.from(document.querySelectorAll('button.widget-button'))"
                           ".some(b => b.innerText.trim() === 'run' && !b.disabled)", timeout=60_000)


@browser_test
def test_runs_overlay_fill_the_table_and_a_sweep_draws_its_summary(browser, start_lab, screenshots, tmp_path):
    lab = start_lab(parameters={"explore": _explore_parameters(tmp_path / "runs")})
    page = open_explore(browser, lab, screenshots, "bench")  # checks the empty bench's panels and their widths

    # γ and the strategy mean nothing without DropIT
    assert page.evaluate(CONTROLS_JS) == {"gamma": False, "strategy": False}
    page.get_by_role("checkbox", name="DropIT").uncheck()
    page.wait_for_function(f"() => ({CONTROLS_JS})().strategy")
    assert page.evaluate(CONTROLS_JS) == {"gamma": True, "strategy": True}
    page.get_by_role("checkbox", name="DropIT").check()
    page.wait_for_function(f"() => !({CONTROLS_JS})().strategy")

    # a dataset that is not there: one escaped sentence, the traceback folded away
    status = missing_dataset_shows_one_escaped_line(page)
    page.locator(".dropit-status").screenshot(path=str(screenshots / "explore_bench_missing_dataset.png"))
    assert status["line"].startswith("failed: ") and "\n" not in status["line"].strip(), status
    assert "/<class>/*.JPEG" in status["line"], status["line"]  # shown as written, not eaten as a tag
    assert status["details"] == {"open": False, "visible": False}, status
    assert "Traceback" not in status["line"] and status["text"].count("\n") <= 2, status["text"]
    select(page, "dataset", "cifar100")
    button(page, "clear").click()  # the failed run goes, and the numbers start again

    first = press_and_watch(page, "run")[-1]  # DropIT at the recipe's γ
    assert first.status.startswith("done: #1 "), first.status
    page.get_by_role("checkbox", name="DropIT").uncheck()
    second = press_and_watch(page, "run")[-1]  # the plain model
    assert second.status.startswith("done: #2 resnet_mini · plain"), second.status
    assert overlaid(first, second), f"runs did not overlay: {first.traces} then {second.traces}"
    assert first.table_rows == 1 and second.table_rows == 2
    # 40 steps, 100 test images: the two top-1s are a few points apart at most, under their noise
    noise = page.evaluate(NOISE_JS)
    assert noise and noise[0].endswith("within noise at 100 test images"), noise
    diff, err = map(float, re.match(r"([-+]\d+\.\d+) ± (\d+\.\d+)", noise[0]).groups())
    assert abs(diff) <= 2 * err  # the mark agrees with the numbers it shows
    page.screenshot(path=str(screenshots / "explore_bench_two_runs.png"))

    button(page, "clear").click()
    # the figure and the table are separate widget messages: wait for both to reach the page
    page.wait_for_function(f"() => {{ const t = ({TRACES_JS})(); return t.traces[0].length === 0 && t.table_rows === 0; }}")

    page.get_by_role("checkbox", name="DropIT").check()  # the sweep sets DropIT itself; this reads better
    sweep_box = page.locator(".widget-text", has=page.locator(".widget-label", has_text="sweep γ")).locator("input")
    sweep_box.fill("0.5, 0.9")
    sweep_box.press("Enter")
    shot = {"taken": False}

    def mid_sweep_screenshot(s: Sample):  # plain and DropIT γ=0.5 done, γ=0.9 half-way
        if not shot["taken"] and "(sweep run 3 of 3)" in s.status and s.points(0, 8) >= MAX_STEPS // 2:
            page.screenshot(path=str(screenshots / "explore_sweep_mid.png"))
            shot["taken"] = True

    done = press_and_watch(page, "sweep", timeout=300, on_sample=mid_sweep_screenshot)[-1]
    assert done.status.startswith("done: sweep of 3 of 3 runs"), done.status  # clear started the numbers again
    assert "within noise of plain at 100 test images" in done.status, done.status
    assert done.table_rows == 3 and len(done.traces[0]) == 12
    # the summary: kept MiB and top-1 at γ 0.5 and 0.9, then the plain run's square in each panel
    assert done.traces[1] == [2, 2, 1, 1], done.traces
    assert page.evaluate(SHAPES_JS)[1] == 3  # the plain run's dashed line in both panels and its noise band
    notes = page.evaluate(ANNOTATIONS_JS)
    assert any("within noise at 100 test images" in t for t in notes[1]), (notes, page.evaluate(NOISE_JS))
    assert shot["taken"], "never saw the third run of the sweep half-way"
    page.locator(".js-plotly-plot").nth(1).scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "explore_sweep_summary.png"))


ROWS_JS = """() => Array.from(document.querySelectorAll('table.dropit-runs tr.dropit-run'))
    .map(tr => Array.from(tr.querySelectorAll('td')).map(td => td.innerText.trim()))"""
AXES_JS = """() => { const gd = document.querySelector('.js-plotly-plot');
    return {autorange: gd.layout.xaxis.autorange, uirevision: gd.layout.uirevision,
            figures: document.querySelectorAll('.js-plotly-plot').length}; }"""


def table_by_run(page) -> dict[int, dict[str, str]]:
    """The runs table as {run number: {column heading: cell text}}."""
    from dropit.lab.notebook.bench import COLUMNS

    rows = page.evaluate(ROWS_JS)
    return {int(re.search(r"#(\d+)", r[0]).group(1)): dict(zip((t for _, t, _ in COLUMNS), r)) for r in rows}


@browser_test
def test_seeds_are_seeds_through_run_sweep_stop_and_clear(browser, start_lab, screenshots, tmp_path):
    """Issue 32's sequence in the browser: run, sweep γ 0, 0.5, 0.9 (its γ 0.9 run repeats run #1's seed), run and
    stop; the table must pool neither the rerun nor the stopped run, and clear must leave an empty, reset bench."""
    steps = 30
    lab = start_lab(parameters={"explore": _explore_parameters(tmp_path / "runs", steps=steps)})
    page = open_explore(browser, lab, screenshots, "seeds")
    schedule = page.locator(".dropit-schedule").inner_text()
    assert schedule.startswith(f"each run trains {steps} steps: 1 epoch × 50") and "seed 42" in schedule, schedule

    first = press_and_watch(page, "run")[-1]  # DropIT γ 0.9 mink, seed 42
    assert first.status.startswith("done: #1 resnet_mini · DropIT γ=0.9 mink"), first.status
    sweep_box = page.locator(".widget-text", has=page.locator(".widget-label", has_text="sweep γ")).locator("input")
    for bad, said in (("0.5, 0.5", "listed twice"), ("", "at least one γ"), ("0.5, 1.5", "outside [0, 1)")):
        sweep_box.fill(bad)
        sweep_box.press("Enter")
        button(page, "sweep").click()
        page.wait_for_function(f"() => document.querySelector('.dropit-status').innerText.includes({said!r})")
        assert page.evaluate(TRACES_JS)["table_rows"] == 1  # refused before any run started
    sweep_box.fill("0, 0.5, 0.9")
    sweep_box.press("Enter")
    done = press_and_watch(page, "sweep", timeout=300)[-1]
    assert done.status.startswith("done: sweep of 3 of 3 runs") and "γ 0 is the plain run" in done.status, done.status
    page.locator(".js-plotly-plot").nth(1).scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "explore_seeds_after_sweep.png"))

    button(page, "run").click()  # the same configuration again, stopped after a few steps
    page.wait_for_function(f"() => ({TRACES_JS})().traces[0].length === 20 && ({TRACES_JS})().traces[0][16] >= 5",
                           timeout=120_000)
    button(page, "stop").click()
    stopped = watch_training(page, timeout=120)[-1]
    assert stopped.status.startswith("stopped: #5 ") and "no verdict" in stopped.status, stopped.status

    table = table_by_run(page)
    assert sorted(table) == [1, 2, 3, 4, 5]
    seeds = {n: row["seeds in the mean"] for n, row in table.items()}
    assert seeds[1] == seeds[2] == seeds[3] == "1 (seed 42)", seeds
    assert seeds[4].startswith("rerun of #1 (seed 42): not pooled"), seeds
    assert re.fullmatch(rf"stopped at step \d+/{steps}: not pooled", seeds[5]), seeds
    vs = {n: row["top-1 − plain"] for n, row in table.items()}
    assert "(one seed each, binomial SEs)" in vs[1] and "(one seed each, binomial SEs)" in vs[3], vs
    assert vs[4] == "as #1 (a rerun is not a seed)" and vs[5] == "– (stopped: no verdict)", vs
    assert not any("mean of" in v for v in vs.values())
    page.screenshot(path=str(screenshots / "explore_seeds_table.png"))

    button(page, "clear").click()
    page.wait_for_function(f"() => {{ const t = ({TRACES_JS})(); const a = ({AXES_JS})();"
                           " return t.traces.length === 1 && t.traces[0].length === 0 && t.table_rows === 0 && a.figures === 1; }")
    axes = page.evaluate(AXES_JS)
    assert axes["autorange"] is True and axes["uirevision"] == "bench-1", axes  # old ranges go; no sweep panel stays


@browser_test
def test_the_claim_notebook_opens_on_its_answer(browser, start_lab, screenshots):
    """With its defaults the claim notebook's first output is the committed study's chart (issue 32)."""
    import json as _json

    lab = start_lab()
    page = open_and_run_all(browser, lab, "claim", timeout=150, hide_files=True)
    first = page.locator(".jp-CodeCell .jp-OutputArea-output").first
    assert first.locator(".main-svg").count() >= 1, first.inner_text()[:500]  # a drawn plotly chart, not text
    text = first.inner_text()
    assert "Does DropIT cost accuracy?" in text, text[:500]
    committed = _json.loads((ROOT / "docs" / "claim" / "claim.json").read_text())
    labels = [line for line in text.splitlines() if re.match(r"(cnn|vit): ", line)]
    assert len(labels) == sum(len(p["arms"]) - 1 for p in committed["protocols"].values()), labels
    assert "cnn: mink γ 0.8" in labels and "vit: sampled γ 0.9 + int8" in labels
    first.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    first.screenshot(path=str(screenshots / "claim_answer.png"))


@browser_test
def test_a_notebook_naming_a_missing_kernel_is_caught(browser, start_lab):
    """The negative control of the kernel check: a kernelspec nobody registered must not pass unnoticed."""
    lab = start_lab(parameters={"quickstart": QUICKSTART},
                    kernelspec={"name": "no-such-kernel", "display_name": "gone", "language": "python"})
    page = browser.new_page()
    page.goto(lab.page_url("quickstart.ipynb"))
    page.locator(".jp-NotebookPanel .jp-CodeCell").first.wait_for()
    _wait_kernel_idle(lab, timeout=60, dialog=page)
    found = kernel_fallback(lab, "quickstart")
    assert found is not None and "names the kernel 'no-such-kernel'" in found, found


@browser_test
def test_overlay_check_fails_when_runs_replace_each_other(browser, start_lab, screenshots, tmp_path):
    """With overlay=False each run clears the figure first: the overlay check must say so."""
    lab = start_lab(parameters={"explore": _explore_parameters(tmp_path / "runs", steps=10, overlay=False)})
    page = open_explore(browser, lab, screenshots, "replaced")
    first = press_and_watch(page, "run")[-1]
    second = press_and_watch(page, "run")[-1]
    assert second.status.startswith("done: #2 "), second.status
    assert second.table_rows == 2  # both runs finished and are in the table ...
    assert not overlaid(first, second), (first.traces, second.traces)  # ... but the second replaced the first


def test_growth_check_on_recorded_samples():
    """The check itself, no browser: growth needs two different non-zero counts during training."""
    def run(*counts, end=40):
        return [Sample(i, [[c, 0, 0]], "training ...") for i, c in enumerate(counts)] + [Sample(99, [[end, 1, 1]], "done")]

    assert grew_while_training(run(0, 5, 5, 10))
    assert not grew_while_training(run(0, 0, 0))        # drawn only at the end
    assert not grew_while_training(run(0, 40, 40))      # drawn once, all at once
    assert not grew_while_training([Sample(0, [], "training ...")])  # no figure at all


def test_overlay_check_on_recorded_samples():
    """The overlay check itself, no browser: one run's traces more, the earlier ones unchanged."""
    one = Sample(0, [[40, 40, 1, 40]], "done")
    assert overlaid(one, Sample(1, [[40, 40, 1, 40, 40, 40, 1, 40]], "done"))
    assert not overlaid(one, Sample(1, [[40, 40, 1, 40]], "done"))                  # replaced
    assert not overlaid(one, Sample(1, [[0, 0, 0, 0, 40, 40, 1, 40]], "done"))       # first run's points gone
    assert not overlaid(Sample(0, [[]], "done"), Sample(1, [[40, 40, 1, 40]], "done"))  # nothing to keep


def test_empty_bench_check_on_recorded_layouts():
    """The empty-bench check itself, no browser: issue 21's narrow figure, lone panel and run-together titles fail."""
    good = {"figure": 1000, "area": 1010, "panels": [300, 300, 300], "titles": [[100, 300], [400, 700], [750, 950]]}
    assert empty_bench_problem(good) is None
    assert "180 px wide" in empty_bench_problem({**good, "figure": 180})
    assert "want 3" in empty_bench_problem({**good, "panels": [300]})  # only the loss panel laid out
    assert "overlap" in empty_bench_problem({**good, "titles": [[100, 300], [400, 760], [750, 950]]})


def _pick_in_title(titles: list[str]) -> tuple[str, str]:
    """(target, pick) from the planner figure's title "target T of plain's saved bytes, fastest: PICK"."""
    found = [re.fullmatch(r"target (\d\.\d\d) of plain's saved bytes, fastest: (.+)", t) for t in titles]
    found = [m for m in found if m]
    assert len(found) == 1, f"expected one planner figure, titles: {titles}"
    return found[0].group(1), found[0].group(2)


@browser_test
def test_memory_planner_slider_marks_a_new_pick(browser, start_lab, screenshots, tmp_path):
    """Moving the memory notebook's target re-picks from the measured table: title and star name the new pick."""
    out = tmp_path / "memory"
    lab = start_lab(parameters={"memory": {
        "interactive": True, "batch_size": 2, "out_dir": str(out), "explore_models": ["resnet_mini"],
        "frontier_rounds": 1, "frontier_configs": "plain,DropIT + int8"}})
    page = open_and_run_all(browser, lab, "memory", timeout=300)
    rows = json.loads((out / "plan.json").read_text())

    def expected(target: float) -> str:  # the planner's rule on its written rows: the fastest that fits
        fits = [r for r in rows if r["saved_bytes"] <= int(target * rows[0]["saved_bytes"]) and r["step_s"] is not None]
        return min(fits, key=lambda r: r["step_s"])["name"] if fits else "no candidate fits"

    target, pick = _pick_in_title(page.evaluate(TITLES_JS))
    assert (target, pick) == ("0.30", expected(0.30))
    # drag towards the end of the track whose pick differs from the first one (plain's end, usually)
    fraction = 1.0 if expected(1.0) != pick else 0.0
    value = drag_slider(page, "target", fraction)
    want = f"target {value:.2f} of plain's saved bytes, fastest: "
    page.wait_for_function(f"() => ({TITLES_JS})().some(t => t.startsWith({want!r}))", timeout=60_000)
    target, new_pick = _pick_in_title(page.evaluate(TITLES_JS))
    assert new_pick == expected(value) and new_pick != pick, (value, pick, new_pick)
    stars = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
        .flatMap(gd => (gd.data || []).filter(t => t.name === 'pick').map(t => Array.from(t.text || [])))""")
    assert stars == [[new_pick]] or (new_pick == "no candidate fits" and stars == [[]]), stars
    page.screenshot(path=str(screenshots / "memory_planner_target.png"))
