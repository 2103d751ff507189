"""Widgets and live plots for the notebooks: the only module that imports ipywidgets.

- :class:`BenchPanel`    the explore notebook's lab bench: model / dataset / γ /
  strategy / epochs / max steps / seed / seeds / compile / channels-last pickers (γ
  and strategy greyed out while DropIT is off) with a line saying the schedule they
  make (the steps the status counts), run, sweep, stop and clear buttons, a status line (a
  failed run: one escaped sentence, its traceback folded in ``<details>``), the
  runs side by side (per-step figure, every panel laid out before the first run),
  the runs table (every top-1 ± its error, "within noise" where so), and the
  sweep's summary figure;
- :class:`LiveRunPlot`   a training callback (``on_step`` / ``on_epoch`` /
  ``on_end``) drawing one run's loss, running top-1, validation top-1 and kept
  bytes into the bench figure in batches, and asking the loop to stop when told;
- :func:`gamma_explorer` a γ slider and a strategy dropdown that redraw the
  heatmap and histogram of one activation (the quickstart notebook);
- :func:`memory_explorer` a γ slider and a quantize menu that redraw the
  per-layer memory of a ResNet and a ViT (the memory notebook).

The bookkeeping (names, colours, the table, the sweep plan, status lines) is in
:mod:`dropit.lab.notebook.bench`, the figures in :mod:`dropit.lab.plots`; this module
only wires them to widgets.

How training stays responsive in JupyterLab (ipykernel 7): the run and sweep
buttons start ``dropit.lab.train.loop.run`` in a background thread and return, so
the cell finishes and the kernel goes back to reading its shell channel. A click
on "stop" is then an ordinary comm message the kernel handles at once; its
handler sets a ``threading.Event`` that the callback checks at the next step
and turns into ``state.stop = True``, so the loop ends cleanly after that step
(with its usual end-of-run evaluation and metrics.json), and a sweep starts no
further run. The figure updates are comm messages sent from the training
thread; ipykernel sends those through its IOPub thread, which is safe from any
thread, and torch releases the GIL in its kernels, so both sides make progress.
Running the loop in the cell itself and pumping events from the callback would
need the kernel's private event loop, which ipykernel 7 rebuilt on anyio; the
thread needs none of that.

Under papermill there is no front end: the explore notebook presses run (or
sweep) programmatically, waits, and displays static copies of the figures and
the table as Markdown.
"""
from __future__ import annotations

import dataclasses
import html
import os
import re
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import ipywidgets as W
import plotly.graph_objects as go

from dropit.lab.notebook import bench
from dropit.lab import plots, stats
from dropit.lab.measure.cache import per_layer_pair
from dropit.lab.models.catalog import default_image_size
from dropit.lab.units import MiB


def _get(obj: Any, key: str, default=None):
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


class LiveRunPlot:
    """Training callback drawing one run into a bench figure, flushing every ``every`` steps.

    It adds the run's traces to ``figure`` (a :class:`dropit.lab.plots.BenchFigure`, or a bench
    ``go.Figure`` it wraps) and fills them: per step the training loss, the training top-1 as a running
    mean since step 1 (it does not start again at each epoch, so an epoch boundary does not look like a
    collapse) and the bytes the step kept for backward (``state.kept_bytes``); per epoch the validation
    top-1, at the epoch's last step. All points are also kept in ``self.history`` (plain lists), which is
    what tests read. ``request_stop()`` (thread-safe) makes the next ``on_step`` set ``state.stop``;
    ``on_progress(state)`` is called after every step.

    ``live=False`` (or the environment variable ``DROPIT_LIVE_PLOTS=0``) draws
    only once, at the end: the negative control of the browser tests.
    """

    def __init__(self, figure, name: str, color: str, *, plain: bool = False, every: int = 10,
                 live: bool | None = None, on_progress: Callable[[Any], None] | None = None):
        self.figure = figure if isinstance(figure, plots.BenchFigure) else plots.BenchFigure(figure)
        self.fig, self.name = self.figure.fig, name
        self.every = max(1, int(every))
        self.live = os.environ.get("DROPIT_LIVE_PLOTS", "1") != "0" if live is None else bool(live)
        self.on_progress = on_progress
        self.stop_event = threading.Event()
        self.stopped_at: int | None = None
        self.total_steps: int | None = None
        self.history: dict[str, list] = {k: [] for k in ("step", "loss", "train_top1", "kept_mib", "val_step", "val_top1", "val_se")}
        self._flushed = 0  # steps already sent to the figure
        self._banked = [0.0, 0]  # correct answers and images of the epochs before this one
        self._epoch = [0.0, 0]  # the same, so far in this epoch
        self.traces = self.figure.add_run(name, color, plain=plain)

    @property
    def kept_counted(self) -> bool:
        """Whether any step's kept bytes could be counted (None is recorded where not)."""
        return any(v is not None for v in self.history["kept_mib"])

    def request_stop(self) -> None:
        self.stop_event.set()

    def _running_top1(self, state) -> float | None:
        """The training top-1 since step 1: the loop's is this epoch's running top-1 over ``state.images`` images,
        so the epochs before are banked when the image count starts again."""
        top1, images = _get(state, "train_top1"), _get(state, "images")
        if top1 is None or not images or top1 != top1:
            return top1
        if images < self._epoch[1]:  # a new epoch began
            self._banked = [self._banked[0] + self._epoch[0], self._banked[1] + self._epoch[1]]
        self._epoch = [float(top1) * images / 100.0, int(images)]
        return 100.0 * (self._banked[0] + self._epoch[0]) / (self._banked[1] + self._epoch[1])

    # -- the lab's callback protocol -------------------------------------------------
    def on_step(self, state) -> None:
        h = self.history
        self.total_steps = _get(state, "total_steps", self.total_steps)
        h["step"].append(int(_get(state, "step", len(h["step"]) + 1)))
        h["loss"].append(float(_get(state, "loss", float("nan"))))
        h["train_top1"].append(self._running_top1(state))
        kept = _get(state, "kept_bytes")
        h["kept_mib"].append(None if kept is None else kept / MiB)
        if self.live and len(h["step"]) - self._flushed >= self.every:
            self.flush()
        if self.stop_event.is_set():
            state.stop = True
            if self.stopped_at is None:
                self.stopped_at = h["step"][-1]
        if self.on_progress is not None:
            self.on_progress(state)

    def on_epoch(self, state) -> None:
        m = _get(state, "metrics") or {}
        if isinstance(m, (list, tuple)):  # the loop's history: one dict per finished epoch
            m = m[-1] if m else {}
        top1 = _get(m, "val_top1")
        if top1 is not None:
            n = _get(m, "val_images") or _get(_get(state, "config"), "val_subset")
            self.history["val_step"].append(int(_get(m, "steps", _get(state, "step", 0))))
            self.history["val_top1"].append(float(top1))
            self.history["val_se"].append(stats.top1_stderr(float(top1), n) if n else None)
        if self.live:
            self.flush()

    def on_end(self, state) -> None:
        n = (_get(state, "final") or {}).get("val_images")  # the full test set: its size is known only now
        if n:
            self.history["val_se"] = [stats.top1_stderr(v, n) if se is None else se
                                      for v, se in zip(self.history["val_top1"], self.history["val_se"])]
        self.flush()

    # -- figure updates --------------------------------------------------------------
    def flush(self) -> None:
        """Send everything recorded so far to the run's traces in one batched update."""
        self.traces.show(self.history)
        self._flushed = len(self.history["step"])


def fit_width(fw: go.FigureWidget, delays: Sequence[float] = (0.5, 1.5, 4.0)) -> go.FigureWidget:
    """Make ``fw`` take its container's width once it is on the page.

    plotly's FigureWidget measures its container when it first draws; in JupyterLab 4 that
    happens before the output area is laid out, so an empty figure is drawn at plotly's
    default 700 px (issue 21: about 180 px a panel) until an update makes it measure again,
    and no resize reaches it. Toggling ``autosize`` sends the relayout plotly.js's own resize
    handler sends, which measures the container again; it is sent ``delays`` seconds after
    the call (the front end does not report to the kernel when the figure is on the page).
    A figure already at its width does not change.
    """
    def remeasure() -> None:
        fw.layout.autosize = False
        fw.layout.autosize = True

    for delay in delays:
        timer = threading.Timer(delay, remeasure)
        timer.daemon = True
        timer.start()
    return fw


def swap_figure(fw: go.FigureWidget, new: go.Figure) -> None:
    """Make ``fw`` show ``new`` in one batched update, whatever either's number of traces: the traces are updated
    in place where the counts match (a slider's redraw sends only what changed), else replaced; the layout,
    its shapes (threshold lines, bands) and annotations follow ``new``."""
    with fw.batch_update():
        if len(fw.data) == len(new.data) and all(a.type == b.type for a, b in zip(fw.data, new.data)):
            for old, trace in zip(fw.data, new.data):
                old.update(trace.to_plotly_json(), overwrite=True)
        else:
            fw.data = ()
            fw.add_traces(list(new.data))
        fw.layout.update(new.layout.to_plotly_json(), overwrite=True)
        fw.layout.shapes = new.layout.shapes  # the threshold line may come or go
        fw.layout.annotations = new.layout.annotations


class BenchPanel:
    """The lab bench: runs side by side, a γ/strategy sweep with its summary, stop and clear.

    ``base`` is a :class:`dropit.lab.train.config.RunConfig` (e.g. from
    ``load_config("params/smoke.yaml")``); the widgets override its model,
    dataset, image size, DropIT settings, compile, channels-last, epochs and
    max_steps. Display it with ``display(panel.widget)``. ``panel.run()``,
    ``panel.sweep()``, ``panel.stop()`` and ``panel.clear()`` do what the
    buttons do; ``panel.wait()`` joins the training thread.

    Each run keeps its traces in :attr:`fig` (colours from its
    :class:`dropit.lab.notebook.bench.Run`) and, once finished, its row in the runs
    table. ``overlay=False`` makes each run replace the previous one in the
    figure instead (the browser test's negative control). A sweep runs the
    plain model first (the reference, which stands for γ 0), then DropIT at each
    strategy and γ, and draws :attr:`summary` as its runs finish; a bad γ list is
    refused in the status line before any run. :meth:`clear` empties the figure
    (axes reset), the table, and removes the summary. Run folders are
    ``<out_root>/<NN>_<model>_<dataset>[_dropit<γ>_<strategy>...]``.
    """

    def __init__(self, base, *, out_root: str | Path = "runs/explore", every: int = 5, overlay: bool = True,
                 sweep_gammas: Sequence[float] = (), sweep_strategies: Sequence[str] = ()):
        from dropit.lab.train.config import CHOICES, DATASETS, MODELS

        self.base, self.out_root, self.every, self.overlay = base, Path(out_root), every, overlay
        self.book = bench.RunBook()
        self.model = W.Dropdown(options=list(MODELS), value=base.model, description="model")
        self.dataset = W.Dropdown(options=list(DATASETS), value=base.dataset, description="dataset")
        size = base.image_size or default_image_size(base.model, base.dataset)
        self.image_size = W.Dropdown(options=sorted({32, 64, 96, 128, 160, 224, size}), value=size, description="image size")
        self.dropit = W.Checkbox(value=bool(base.dropit), description="DropIT", tooltip="off: the plain model")
        self.gamma = W.FloatSlider(value=base.dropit_gamma, min=0.0, max=0.99, step=0.01, description="γ", continuous_update=False)
        strategies = list(CHOICES["dropit_strategy"])
        self.strategy = W.Dropdown(options=strategies, value=base.dropit_strategy, description="strategy")
        self.epochs = W.BoundedIntText(value=base.epochs, min=1, max=1000, description="epochs")
        self.max_steps = W.BoundedIntText(value=base.max_steps or 0, min=0, max=10**7, description="max steps", tooltip="0: no limit")
        self.compile = W.Checkbox(value=bool(base.compile), description="compile", tooltip="torch.compile the model for training (slow to start)")
        self.channels_last = W.Checkbox(value=bool(base.channels_last), description="channels last")
        self.seed = W.BoundedIntText(value=base.seed, min=0, max=2**31 - 1, description="seed",
                                     tooltip="the first seed (params file's seed); seeds > 1 runs seed, seed+1, ...")
        self.schedule = W.HTML()  # what a run will train, from the fields and the recipe: the steps the status counts
        self.schedule.add_class("dropit-schedule")
        self.seeds = W.BoundedIntText(value=1, min=1, max=20, description="seeds",
                                      tooltip="run each configuration this many times (seeds seed, seed+1, ...): the top-1 bars then show their spread")
        self.sweep_gammas = W.Text(value=", ".join(f"{g:g}" for g in sweep_gammas) or "0.5, 0.9", description="sweep γ",
                                   tooltip="dropping rates in [0, 1), comma-separated, each once; the plain model runs "
                                           "first and stands for γ 0")
        self.sweep_strategies = W.SelectMultiple(options=strategies, value=tuple(sweep_strategies) or (base.dropit_strategy,),
                                                 rows=len(strategies), description="strategies")
        self.run_button = W.Button(description="run", button_style="success", icon="play")
        self.sweep_button = W.Button(description="sweep", button_style="info", icon="forward", tooltip="plain, then DropIT at each γ and strategy")
        self.stop_button = W.Button(description="stop", button_style="danger", icon="stop", disabled=True)
        self.clear_button = W.Button(description="clear", icon="trash", tooltip="remove all runs from the figure and the table")
        self.status = W.HTML("ready")
        self.status.add_class("dropit-status")  # what the browser tests read
        self.bench_figure = plots.BenchFigure(fit_width(go.FigureWidget(plots.bench_figure())))
        self.fig = self.bench_figure.fig
        self.table = W.HTML(bench.table_html([]))
        self.summary = go.FigureWidget(plots.sweep_summary_figure([]))  # fitted when a sweep shows it
        self.thread: threading.Thread | None = None
        self.current: LiveRunPlot | None = None
        self.result: dict | None = None
        self.error: BaseException | None = None
        self._cancel = threading.Event()
        self._sweep_runs: list[bench.Run] = []
        self._gamma0 = False  # the last sweep's list held γ 0 (the plain run stands for it)
        self._last_status = 0.0
        self._wire()

    def _wire(self) -> None:
        """Connect the fields and buttons to the bench, and lay the panel out."""
        self.dataset.observe(self._dataset_changed, names="value")
        self.dropit.observe(self._dropit_changed, names="value")
        for w in (self.model, self.dataset, self.epochs, self.max_steps, self.seed):
            w.observe(lambda _: self._show_schedule(), names="value")
        self._show_schedule()
        self._dropit_changed({"new": self.dropit.value})
        self.run_button.on_click(lambda _: self.run())
        self.sweep_button.on_click(lambda _: self.sweep())
        self.stop_button.on_click(lambda _: self.stop())
        self.clear_button.on_click(lambda _: self.clear())
        self.widget = W.VBox([
            W.HBox([self.model, self.dataset, self.image_size]),
            W.HBox([self.dropit, self.gamma, self.strategy]),
            W.HBox([self.epochs, self.max_steps, self.seed, self.seeds, self.compile, self.channels_last]),
            self.schedule,
            W.HBox([self.sweep_gammas, self.sweep_strategies]),
            W.HBox([self.run_button, self.sweep_button, self.stop_button, self.clear_button]),
            self.status, self.fig, self.table,
        ], layout=W.Layout(width="100%"))

    # -- what the widgets describe ------------------------------------------------------
    def _dataset_changed(self, change) -> None:
        self.image_size.value = default_image_size(self.model.value, change["new"])

    def _dropit_changed(self, change) -> None:
        """γ and the strategy mean nothing for the plain model: greyed out while DropIT is off."""
        self.gamma.disabled = self.strategy.disabled = not change["new"]

    def _show_schedule(self) -> None:
        self.schedule.value = "each run trains " + html.escape(bench.schedule_words(self.config()))

    def config(self):
        """The RunConfig the widgets describe now (its out_dir is chosen when it runs)."""
        return dataclasses.replace(
            self.base, model=self.model.value, dataset=self.dataset.value, image_size=int(self.image_size.value),
            dropit=bool(self.dropit.value), dropit_gamma=float(self.gamma.value), dropit_strategy=self.strategy.value,
            compile=bool(self.compile.value), channels_last=bool(self.channels_last.value),
            epochs=int(self.epochs.value), max_steps=int(self.max_steps.value) or None, seed=int(self.seed.value),
            resume=False,
        )

    def _folder(self, run: bench.Run) -> Path:
        """A new folder under out_root: numbered after any already there, so no run overwrites another."""
        taken = [int(m.group(1)) for p in (self.out_root.iterdir() if self.out_root.is_dir() else ())
                 if (m := re.match(r"(\d+)_", p.name))]
        return self.out_root / f"{max(taken, default=0) + 1:02d}_{bench.run_slug(run.config)}"

    # -- buttons -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def run(self) -> None:
        """Train the configuration the widgets describe, in a background thread (no-op while one runs)."""
        self._start(bench.with_seeds(self.config(), int(self.seeds.value)), sweep=False)

    def sweep(self, gammas: Sequence[float] | str | None = None, strategies: Sequence[str] | None = None) -> None:
        """The plain model, then DropIT at each strategy and γ (default: the sweep widgets'), one after another."""
        from dropit.lab.train.config import ConfigError

        if self.running:
            return
        listed = self.sweep_gammas.value if gammas is None else gammas
        try:
            plan = bench.sweep_configs(self.config(), listed, list(strategies or self.sweep_strategies.value),
                                       seeds=int(self.seeds.value))
        except ConfigError as e:  # said before any run starts
            self._set_status(f"cannot sweep: {e}", force=True)
            return
        self._gamma0 = 0.0 in bench.parse_gammas(listed)
        self._start(plan, sweep=True)

    def stop(self) -> None:
        """End the current run after its current step (evaluated, metrics written) and start no further run."""
        if self.running:
            self._cancel.set()
            if self.current is not None:
                self.current.request_stop()
            self.stop_button.disabled = True

    def clear(self) -> None:
        """Remove every run from the figure, the table and the summary (not while training)."""
        if self.running:
            return
        self.book.clear()
        self._sweep_runs = []
        self.table.value = bench.table_html([])  # before the figure: a watcher that sees the figure empty sees the table empty too
        self.bench_figure.clear()  # the runs' traces go and the axes fit what comes next
        swap_figure(self.summary, plots.sweep_summary_figure([]))
        self.widget.children = tuple(c for c in self.widget.children if c is not self.summary)  # no empty sweep panel
        self._set_status("ready", force=True)

    def wait(self, timeout: float | None = None) -> dict | None:
        if self.thread is not None:
            self.thread.join(timeout)
        return self.result

    # -- the training thread ---------------------------------------------------------------
    def _start(self, configs: list, sweep: bool) -> None:
        if self.running:
            return
        self._cancel.clear()
        self.result, self.error = None, None
        if sweep:
            self._sweep_runs = []
            if self.summary not in self.widget.children:
                self.widget.children = (*self.widget.children, self.summary)
                fit_width(self.summary)
        for b in (self.run_button, self.sweep_button, self.clear_button):
            b.disabled = True
        self.stop_button.disabled = False
        self.thread = threading.Thread(target=self._train_all, args=(configs, sweep), name="dropit-train", daemon=True)
        self.thread.start()

    def _train_all(self, configs: list, sweep: bool) -> None:
        from dropit.lab.train import loop as train

        t0, done, total = time.monotonic(), [], len(configs)
        try:
            for i, cfg in enumerate(configs, 1):
                if self._cancel.is_set():
                    break
                run = self.book.add(cfg)
                run.config = dataclasses.replace(cfg, out_dir=str(self._folder(run)), label=f"explore: {run.name}")
                if sweep:
                    self._sweep_runs.append(run)
                where = (i, total) if sweep else None
                self._set_status(f"training {run.name}{' (sweep run %d of %d)' % where if where else ''}: starting "
                                 + ("(loading data, compiling on the first step)" if cfg.compile else "(loading data)"), force=True)
                if not self.overlay:
                    self.bench_figure.clear()
                self.current = LiveRunPlot(self.bench_figure, run.name, run.color, plain=run.plain, every=self.every,
                                           on_progress=self._progress(run, where))
                try:
                    run.result = train.run(run.config, callbacks=[self.current])
                    run.total_steps = self.current.total_steps or run.total_steps
                except BaseException as e:  # shown in the panel: a thread's traceback has no cell
                    run.error, self.error = repr(e), e
                    self.table.value = bench.table_html(self.book.table())
                    self._set_status(bench.error_html(e, traceback.format_exc()[-4000:]), force=True, is_html=True)
                    return
                self.result = run.result
                done.append(run)
                self.table.value = bench.table_html(self.book.table())
                if sweep:
                    swap_figure(self.summary, plots.sweep_summary_figure(self._sweep_table()))
                if self.current.stopped_at is not None:
                    break
            self._set_status(self._finished_line(done, total, sweep, time.monotonic() - t0), force=True)
        finally:
            self.current = None
            for b in (self.run_button, self.sweep_button, self.clear_button):
                b.disabled = False
            self.stop_button.disabled = True

    def _sweep_table(self) -> list[dict]:
        numbers = {r.number for r in self._sweep_runs}
        return [row for row in self.book.table() if row["number"] in numbers]

    def _progress(self, run: bench.Run, where: tuple[int, int] | None) -> Callable[[Any], None]:
        t_start, first = time.monotonic(), {}

        def update(state) -> None:
            now = time.monotonic()
            first.setdefault("t", now)
            left = bench.remaining_s(state.step, state.total_steps, now - first["t"])
            line = bench.progress_line(run.name, state.step, state.total_steps, now - t_start, left, where)
            self._set_status(line, force=state.step >= state.total_steps)

        return update

    def _finished_line(self, done: list, total: int, sweep: bool, seconds: float) -> str:
        if sweep:
            return bench.sweep_line(self.book, done, total, seconds, gamma0=self._gamma0)
        if not done:
            return "stopped before the run started"
        counted = self.current is None or self.current.kept_counted
        return bench.finished_line(self.book, done[-1], kept_counted=counted)

    def _set_status(self, text: str, force: bool = False, *, is_html: bool = False) -> None:
        """Show ``text`` (escaped, unless ``is_html``) in the status line."""
        now = time.monotonic()
        if force or now - self._last_status > 0.25:  # at most four updates a second from the training loop
            self.status.value = text if is_html else html.escape(text)
            self._last_status = now


def gamma_explorer(x, *, gamma: float = 0.9, strategy: str = "mink", index=(0, 0), seed: int = 0) -> W.VBox:
    """A gamma slider and strategy dropdown redrawing heatmap and histogram of ``x``."""
    from dropit.strategies import STRATEGIES

    from dropit.lab.notebook import teach

    def figures(g: float, s: str):
        d = teach.drop(x, g, s, seed)
        return (
            plots.activation_heatmap(d.before, d.after, index=index),
            plots.magnitude_histogram(d.before, d.threshold, d.kept, title=f"|x| at γ = {g:g} ({s})"),
        )

    heat, hist = (fit_width(go.FigureWidget(f)) for f in figures(gamma, strategy))
    slider = W.FloatSlider(value=gamma, min=0.0, max=0.99, step=0.01, description="γ", continuous_update=False)
    dropdown = W.Dropdown(options=list(STRATEGIES), value=strategy, description="strategy")

    def redraw(_=None):
        new_heat, new_hist = figures(slider.value, dropdown.value)
        swap_figure(heat, new_heat)
        swap_figure(hist, new_hist)

    slider.observe(redraw, names="value")
    dropdown.observe(redraw, names="value")
    box = W.VBox([W.HBox([slider, dropdown]), heat, hist])
    box.redraw = redraw  # for tests and scripted use
    box.figures = (heat, hist)
    box.controls = (slider, dropdown)
    return box


def memory_explorer(
    models=("resnet18_cifar", "vit_b_16"), *, gamma: float = 0.9, quantize: str | None = "int8",
    batch_size: int = 8, top: int | None = 30, strategy: str = "sampled",
) -> W.VBox:
    """A gamma slider and a quantize menu redrawing the per-layer memory of each model, plain and
    converted (meta-device estimates: sizes only, so any batch size redraws in about a second)."""
    from dropit.quant import LEVELS

    def figure(name, g, q):
        layers = per_layer_pair(name, gamma=g, strategy=strategy, batch_size=batch_size, quantize=q)  # meta estimate
        total = {label: sum(r["bytes"] for r in rows) / MiB for label, rows in layers.items()}
        summary = ", ".join(f"{label}: {mib:.1f} MiB" for label, mib in total.items())
        return plots.layer_memory_bars(layers, top=top, title=f"{name}, batch {batch_size}: {summary}")

    figs = [fit_width(go.FigureWidget(figure(name, gamma, quantize))) for name in models]
    slider = W.FloatSlider(value=gamma, min=0.0, max=0.99, step=0.01, description="γ", continuous_update=False)
    menu = W.Dropdown(options=[("none (exact)", None)] + [(lv + " (lossy)", lv) for lv in LEVELS], value=quantize,
                      description="quantize")

    def redraw(_=None):
        for fw, name in zip(figs, models):
            swap_figure(fw, figure(name, slider.value, menu.value))

    slider.observe(redraw, names="value")
    menu.observe(redraw, names="value")
    box = W.VBox([W.HBox([slider, menu]), *figs])
    box.redraw = redraw  # for tests and scripted use
    box.figures = tuple(figs)
    box.controls = (slider, menu)
    return box
