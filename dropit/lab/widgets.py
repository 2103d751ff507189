"""Widgets and live plots for the notebooks: the only module that imports ipywidgets.

- :class:`LivePlotCallback`  a training callback (``on_step`` / ``on_epoch`` /
  ``on_end``) that appends loss, top-1 and cache memory to a plotly
  ``FigureWidget`` in batches, and asks the loop to stop when told to;
- :class:`TrainingPanel`     model / dataset / gamma / strategy pickers, run and
  stop buttons, a status line and the live figure (the explore notebook);
- :func:`gamma_explorer`     a gamma slider and a strategy dropdown that redraw
  the heatmap and histogram of one activation (the quickstart notebook);
- :func:`memory_explorer`    a gamma slider and a quantize menu that redraw the
  per-layer memory of a ResNet and a ViT (the memory notebook).

How training stays responsive in JupyterLab (ipykernel 7): the run button
starts ``dropit.lab.train.run`` in a background thread and returns, so the cell
finishes and the kernel goes back to reading its shell channel. A click on
"stop" is then an ordinary comm message the kernel handles at once; its
handler sets a ``threading.Event`` that the callback checks at the next step
and turns into ``state.stop = True``, so the loop ends cleanly after that step
(with its usual end-of-run evaluation and metrics.json). The figure updates
are comm messages sent from the training thread; ipykernel sends those through
its IOPub thread, which is safe from any thread, and torch releases the GIL in
its kernels, so both sides make progress. Running the loop in the cell itself
and pumping events from the callback would need the kernel's private event
loop, which ipykernel 7 rebuilt on anyio; the thread needs none of that.

Under papermill there is no front end: notebooks skip these widgets (their
``interactive`` parameter) and display the static figures of
:mod:`dropit.lab.plots` instead.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import traceback
from pathlib import Path
from typing import Any, Callable

import ipywidgets as W
import plotly.graph_objects as go

from . import plots

MiB = 2**20


def live_training_figure(title: str | None = None) -> go.FigureWidget:
    """A FigureWidget with the three training panels and one empty line in each."""
    fig = go.FigureWidget(plots.training_figure(step_axis=True, title=title))
    fig.add_scatter(x=[], y=[], mode="lines", name="train loss (per step)", row=1, col=1)
    fig.add_scatter(x=[], y=[], mode="lines+markers", name="top-1", row=1, col=2)
    fig.add_scatter(x=[], y=[], mode="lines+markers", name="cache (MiB)", row=1, col=3)
    return fig


def _get(obj: Any, key: str, default=None):
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


class LivePlotCallback:
    """Training callback that feeds a live FigureWidget, flushing every ``every`` steps.

    The figure's traces 0, 1, 2 are loss per step, top-1 per epoch and cache
    MiB per epoch (as made by :func:`live_training_figure`). All points are also
    kept in ``self.history`` (plain lists), which is what tests and static plots read.
    ``request_stop()`` (thread-safe) makes the next ``on_step`` set ``state.stop``.

    ``live=False`` (or the environment variable ``DROPIT_LIVE_PLOTS=0``) draws
    only once, at the end: the negative control of the browser tests.
    """

    def __init__(self, fig: go.FigureWidget | None = None, *, every: int = 10,
                 on_status: Callable[[str], None] | None = None, live: bool | None = None):
        self.fig = fig if fig is not None else live_training_figure()
        self.every = max(1, int(every))
        self.live = os.environ.get("DROPIT_LIVE_PLOTS", "1") != "0" if live is None else bool(live)
        self.on_status = on_status
        self.stop_event = threading.Event()
        self.history: dict[str, list] = {"step": [], "loss": [], "epoch": [], "top1": [], "cache_mib": []}
        self._flushed = 0  # steps already sent to the figure
        self.stopped_at: int | None = None

    def request_stop(self) -> None:
        self.stop_event.set()

    def reset(self) -> None:
        self.stop_event.clear()
        self.stopped_at = None
        for v in self.history.values():
            v.clear()
        self._flushed = 0
        with self.fig.batch_update():
            for trace in self.fig.data[:3]:
                trace.x, trace.y = (), ()

    # -- the lab's callback protocol -------------------------------------------------
    def on_step(self, state) -> None:
        loss = _get(state, "loss")
        if loss is not None:
            self.history["step"].append(int(_get(state, "step", len(self.history["step"]) + 1)))
            self.history["loss"].append(float(loss))
        if self.live and len(self.history["step"]) - self._flushed >= self.every:
            self.flush()
        if self.stop_event.is_set():
            state.stop = True
            if self.stopped_at is None:
                self.stopped_at = _get(state, "step")
                self._status(f"stopping after step {self.stopped_at} ...")

    def on_epoch(self, state) -> None:
        m = _get(state, "metrics") or {}
        if isinstance(m, (list, tuple)):  # the loop's history: one dict per finished epoch
            m = m[-1] if m else {}
        epoch = _get(m, "epoch", _get(state, "epoch"))
        top1 = _get(m, "val_top1", _get(m, "top1"))
        cache = _get(m, "cache_bytes")
        self.history["epoch"].append(epoch)
        self.history["top1"].append(top1)
        self.history["cache_mib"].append(None if cache is None else cache / MiB)
        if self.live:
            self.flush()
        self._status(f"epoch {epoch}: loss {self.history['loss'][-1] if self.history['loss'] else float('nan'):.3f}, top-1 {top1 if top1 is not None else float('nan'):.2f}%")

    def on_end(self, state) -> None:
        self.flush()

    # -- figure updates --------------------------------------------------------------
    def flush(self) -> None:
        """Send everything recorded so far to the figure in one batched update."""
        h = self.history
        with self.fig.batch_update():
            self.fig.data[0].x, self.fig.data[0].y = tuple(h["step"]), tuple(h["loss"])
            ep = [(e, t, c) for e, t, c in zip(h["epoch"], h["top1"], h["cache_mib"])]
            self.fig.data[1].x = tuple(e for e, t, _ in ep if t is not None)
            self.fig.data[1].y = tuple(t for _, t, _ in ep if t is not None)
            self.fig.data[2].x = tuple(e for e, _, c in ep if c is not None)
            self.fig.data[2].y = tuple(c for _, _, c in ep if c is not None)
        self._flushed = len(h["step"])

    def _status(self, text: str) -> None:
        if self.on_status is not None:
            self.on_status(text)


def _dataset_size(dataset: str) -> int:
    return 32 if dataset == "cifar100" else 64


class TrainingPanel:
    """Pick model, dataset, gamma and strategy; run; watch; stop.

    ``base`` is a :class:`dropit.lab.config.RunConfig` (e.g. from
    ``load_config("params/smoke.yaml")``); the widgets override its model,
    dataset, image size, DropIT settings, epochs and max_steps. Display it with
    ``display(panel.widget)``. ``panel.run()`` and ``panel.stop()`` do what
    the buttons do; ``panel.wait()`` joins the training thread.
    """

    def __init__(self, base, *, out_root: str | Path = "runs/explore", every: int = 5):
        from .config import CHOICES, MODELS, DATASETS

        self.base = base
        self.out_root = Path(out_root)
        self.model = W.Dropdown(options=list(MODELS), value=base.model, description="model")
        self.dataset = W.Dropdown(options=list(DATASETS), value=base.dataset, description="dataset")
        size = base.image_size or _dataset_size(base.dataset)
        sizes = sorted({32, 64, 96, 128, 160, 224, size})
        self.image_size = W.Dropdown(options=sizes, value=size, description="image size")
        self.dropit = W.Checkbox(value=bool(base.dropit), description="DropIT")
        self.gamma = W.FloatSlider(value=base.dropit_gamma, min=0.0, max=0.99, step=0.01, description="γ", continuous_update=False)
        self.strategy = W.Dropdown(options=list(CHOICES["dropit_strategy"]), value=base.dropit_strategy, description="strategy")
        self.epochs = W.BoundedIntText(value=base.epochs, min=1, max=1000, description="epochs")
        self.max_steps = W.BoundedIntText(value=base.max_steps or 0, min=0, max=10**7, description="max steps", tooltip="0: no limit")
        self.run_button = W.Button(description="run", button_style="success", icon="play")
        self.stop_button = W.Button(description="stop", button_style="danger", icon="stop", disabled=True)
        self.status = W.HTML("ready")
        self.callback = LivePlotCallback(every=every, on_status=self._set_status)
        self.fig = self.callback.fig
        self.thread: threading.Thread | None = None
        self.result: dict | None = None
        self.error: BaseException | None = None
        self._runs = 0

        self.dataset.observe(self._dataset_changed, names="value")
        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())
        self.widget = W.VBox(
            [
                W.HBox([self.model, self.dataset, self.image_size]),
                W.HBox([self.dropit, self.gamma, self.strategy]),
                W.HBox([self.epochs, self.max_steps, self.run_button, self.stop_button]),
                self.status,
                self.fig,
            ]
        )

    def _dataset_changed(self, change) -> None:
        self.image_size.value = _dataset_size(change["new"])

    def _set_status(self, text: str) -> None:
        self.status.value = text

    def config(self):
        """The RunConfig the widgets describe now."""
        self._runs += 1
        name = f"{self.model.value}_{self.dataset.value}" + (f"_dropit{self.gamma.value:g}_{self.strategy.value}" if self.dropit.value else "")
        return dataclasses.replace(
            self.base,
            model=self.model.value,
            dataset=self.dataset.value,
            image_size=int(self.image_size.value),
            dropit=bool(self.dropit.value),
            dropit_gamma=float(self.gamma.value),
            dropit_strategy=self.strategy.value,
            epochs=int(self.epochs.value),
            max_steps=int(self.max_steps.value) or None,
            out_dir=str(self.out_root / f"{self._runs:02d}_{name}"),
            label=f"explore: {name}",
            resume=False,
        )

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def run(self) -> None:
        """Start training in a background thread (no-op while one runs)."""
        if self.running:
            return
        cfg = self.config()
        self.callback.reset()
        self.result, self.error = None, None
        self.run_button.disabled, self.stop_button.disabled = True, False
        self._set_status(f"training {cfg.label} ... (out_dir {cfg.out_dir})")
        self.thread = threading.Thread(target=self._train, args=(cfg,), name="dropit-train", daemon=True)
        self.thread.start()

    def _train(self, cfg) -> None:
        from . import train

        try:
            self.result = train.run(cfg, callbacks=[self.callback])
            final = (self.result or {}).get("final", {})
            how = "stopped" if self.callback.stopped_at is not None else "done"
            self._set_status(
                f"{how}: top-1 {final.get('top1', float('nan')):.2f}%, "
                f"cache {final.get('cache_bytes', 0) / MiB:.1f} MiB, metrics in {cfg.out_dir}/metrics.json"
            )
        except BaseException as e:  # shown in the panel: a thread's traceback has no cell
            self.error = e
            self._set_status("<pre>" + traceback.format_exc()[-2000:] + "</pre>")
        finally:
            self.run_button.disabled, self.stop_button.disabled = False, True

    def stop(self) -> None:
        """Ask the running loop to stop after its current step."""
        if self.running:
            self.callback.request_stop()
            self.stop_button.disabled = True

    def wait(self, timeout: float | None = None) -> dict | None:
        if self.thread is not None:
            self.thread.join(timeout)
        return self.result


def _refresh(fw: go.FigureWidget, new: go.Figure) -> None:
    """Make ``fw`` show ``new`` (same trace count) in one batched update."""
    with fw.batch_update():
        for old, trace in zip(fw.data, new.data):
            old.update(trace.to_plotly_json(), overwrite=True)
        fw.layout.update(new.layout.to_plotly_json(), overwrite=True)
        fw.layout.shapes = new.layout.shapes  # the threshold line may come or go
        fw.layout.annotations = new.layout.annotations


def gamma_explorer(x, *, gamma: float = 0.9, strategy: str = "mink", index=(0, 0), seed: int = 0) -> W.VBox:
    """A gamma slider and strategy dropdown redrawing heatmap and histogram of ``x``."""
    from dropit.strategies import STRATEGIES

    from . import teach

    def figures(g: float, s: str):
        d = teach.drop(x, g, s, seed)
        return (
            plots.activation_heatmap(d.before, d.after, index=index),
            plots.magnitude_histogram(d.before, d.threshold, d.kept, title=f"|x| at γ = {g:g} ({s})"),
        )

    heat, hist = (go.FigureWidget(f) for f in figures(gamma, strategy))
    slider = W.FloatSlider(value=gamma, min=0.0, max=0.99, step=0.01, description="γ", continuous_update=False)
    dropdown = W.Dropdown(options=list(STRATEGIES), value=strategy, description="strategy")

    def redraw(_=None):
        new_heat, new_hist = figures(slider.value, dropdown.value)
        _refresh(heat, new_heat)
        _refresh(hist, new_hist)

    slider.observe(redraw, names="value")
    dropdown.observe(redraw, names="value")
    box = W.VBox([W.HBox([slider, dropdown]), heat, hist])
    box.redraw = redraw  # for tests and scripted use
    box.figures = (heat, hist)
    box.controls = (slider, dropdown)
    return box


def _replace(fw: go.FigureWidget, new: go.Figure) -> None:
    """Make ``fw`` show ``new``, whatever its number of traces."""
    with fw.batch_update():
        fw.data = ()
        fw.add_traces(list(new.data))
        fw.layout.update(new.layout.to_plotly_json(), overwrite=True)


def memory_explorer(
    models=("resnet18_cifar", "vit_b_16"), *, gamma: float = 0.9, quantize: str | None = "int8",
    batch_size: int = 8, top: int | None = 30, strategy: str = "sampled",
) -> W.VBox:
    """A gamma slider and a quantize menu redrawing the per-layer memory of each model, plain and
    converted (meta-device estimates: sizes only, so any batch size redraws in about a second)."""
    from dropit.quant import LEVELS

    from . import teach

    def figure(name, g, q):
        layers = teach.plain_vs_dropit_layers(name, gamma=g, strategy=strategy, batch_size=batch_size,
                                              quantize=q, estimate=True)
        total = {label: sum(r["bytes"] for r in rows) / MiB for label, rows in layers.items()}
        summary = ", ".join(f"{label}: {mib:.1f} MiB" for label, mib in total.items())
        return plots.layer_memory_bars(layers, top=top, title=f"{name}, batch {batch_size}: {summary}")

    figs = [go.FigureWidget(figure(name, gamma, quantize)) for name in models]
    slider = W.FloatSlider(value=gamma, min=0.0, max=0.99, step=0.01, description="γ", continuous_update=False)
    menu = W.Dropdown(options=[("none (exact)", None)] + [(lv + " (lossy)", lv) for lv in LEVELS], value=quantize,
                      description="quantize")

    def redraw(_=None):
        for fw, name in zip(figs, models):
            _replace(fw, figure(name, slider.value, menu.value))

    slider.observe(redraw, names="value")
    menu.observe(redraw, names="value")
    box = W.VBox([W.HBox([slider, menu]), *figs])
    box.redraw = redraw  # for tests and scripted use
    box.figures = tuple(figs)
    box.controls = (slider, menu)
    return box
