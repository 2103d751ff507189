"""Plotly figures of the kit: pure functions from tensors or rows to ``go.Figure``.

Only notebooks and the report import this module (it imports plotly); the live,
widget-backed versions live in :mod:`dropit.lab.notebook.widgets`.

Grouped by the notebook that shows them (the sections below follow the same order):

quickstart.ipynb
- :func:`activation_heatmap`    one activation slice before and after dropping
- :func:`magnitude_histogram`   |x| with the kept/dropped split and the threshold
- :func:`gamma_curves`          weight-gradient error and kept bytes vs gamma, one look per strategy
- :func:`cache_vs_gamma_figure` a model's bytes kept for backward vs gamma

quickstart.ipynb and memory.ipynb
- :func:`layer_memory_bars`     bytes kept for backward per layer (one or more models)

explore.ipynb (the lab bench)
- :func:`bench_figure`          the empty per-step panels; :class:`BenchFigure` owns the runs drawn into them
                                (:meth:`BenchFigure.add_run` returns a run's :class:`RunTraces`, by name)
- :func:`sweep_summary_figure`  kept memory and top-1 (± error) against γ, the plain run standing for γ 0

memory.ipynb
- :func:`cache_column_figure`   the Cache (MB) column: ours beside the paper's
- :func:`frontier_figure`       memory against step time: DropIT, quantized, checkpointed

cifar100.ipynb, imagenet.ipynb, iclr.ipynb
- :func:`training_curves`       loss, top-1 and cache memory per epoch of runs
- :func:`training_figure`       the empty three-panel per-epoch layout

The claim notebook's figures are in :mod:`dropit.lab.claim.figures`, the planner's in
:mod:`dropit.lab.notebook.planner_widget`.

    from dropit.lab import plots
    from dropit.lab.notebook import teach
    d = teach.drop(teach.demo_activation(), gamma=0.9)
    plots.activation_heatmap(d.before, d.after).show()
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from dropit.lab import stats
from dropit.lab.units import MiB

KEPT_COLOR = "#1f77b4"
DROPPED_COLOR = "#d62728"
PAPER_COLOR = "#7f7f7f"


def _by(rows: Iterable[Mapping[str, Any]], key: str) -> dict[Any, list[Mapping[str, Any]]]:
    groups: dict[Any, list] = {}
    for r in rows:
        groups.setdefault(r.get(key), []).append(r)
    return groups



# ================================================================== quickstart.ipynb: one activation, what γ costs and saves


def _slice2d(t, index: Sequence[int]) -> torch.Tensor:
    t = torch.as_tensor(t).detach().float().cpu()
    while t.dim() > 2:
        i = index[0] if index else 0
        t, index = t[i], index[1:]
    if t.dim() == 1:
        t = t.unsqueeze(0)
    return t


def activation_heatmap(before, after, *, index: Sequence[int] = (0, 0), title: str | None = None) -> go.Figure:
    """Two heatmaps of one 2-D slice (``index`` picks sample and channel): before / after.

    Both panels share one symmetric colour scale (zero is white), so what
    DropIT dropped shows as white in the right panel.
    """
    b, a = _slice2d(before, index), _slice2d(after, index)
    lim = float(b.abs().max()) or 1.0
    dropped = (a.eq(0) & b.ne(0)).float().mean().item()
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("cached without DropIT", f"cached with DropIT ({dropped:.0%} of this slice dropped)"),
        horizontal_spacing=0.06,
    )
    common = dict(colorscale="RdBu", zmin=-lim, zmax=lim, zmid=0.0)
    fig.add_trace(go.Heatmap(z=b.tolist(), name="before", showscale=False, **common), 1, 1)
    fig.add_trace(go.Heatmap(z=a.tolist(), name="after", colorbar=dict(title="x"), **common), 1, 2)
    h, w = b.shape
    for c in (1, 2):  # square cells; the panel shrinks to the slice ("domain"), no blank margin around it
        fig.update_xaxes(range=[-0.5, w - 0.5], constrain="domain", row=1, col=c)
        fig.update_yaxes(range=[h - 0.5, -0.5], constrain="domain", scaleanchor=f"x{'' if c == 1 else c}", row=1, col=c)
    fig.update_layout(title=title or f"One activation slice {tuple(index)}", height=420)
    return fig


def magnitude_histogram(
    x, threshold: float | None = None, kept=None, *, bins: int = 80, title: str | None = None
) -> go.Figure:
    """Histogram of |x| (counts computed here, so the figure stays small).

    With ``kept`` (a bool tensor like x) the bars are split into kept and
    dropped elements; ``threshold`` draws the dropping boundary.
    """
    mag = torch.as_tensor(x).detach().float().abs().reshape(-1).cpu()
    hi = float(mag.max()) if mag.numel() else 1.0
    edges = torch.linspace(0.0, hi or 1.0, bins + 1)
    centers = ((edges[:-1] + edges[1:]) / 2).tolist()
    width = float(edges[1] - edges[0])

    def counts(values: torch.Tensor) -> list[int]:
        if values.numel() == 0:
            return [0] * bins
        return torch.histogram(values, bins=edges).hist.long().tolist()

    fig = go.Figure()
    if kept is None:
        fig.add_trace(go.Bar(x=centers, y=counts(mag), width=width, name="|x|", marker_color=KEPT_COLOR))
    else:
        k = torch.as_tensor(kept).reshape(-1).bool().cpu()
        fig.add_trace(go.Bar(x=centers, y=counts(mag[~k]), width=width, name=f"dropped ({(~k).sum().item()})", marker_color=DROPPED_COLOR))
        fig.add_trace(go.Bar(x=centers, y=counts(mag[k]), width=width, name=f"kept ({k.sum().item()})", marker_color=KEPT_COLOR))
        fig.update_layout(barmode="stack")
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dash", line_color="black", annotation_text=f"threshold {threshold:.3g}")
    fig.update_layout(
        title=title or "Magnitudes |x| of the cached input",
        xaxis_title="|x|",
        yaxis_title="elements",
        bargap=0,
        height=380,
    )
    return fig


# one look per strategy line, wide and solid first, so a later line lying on it (sampled on mink) leaves it visible
_STRATEGY_STYLES = (("solid", 5, "circle", 11), ("dash", 2, "x", 8), ("dot", 2, "diamond-open", 9), ("dashdot", 2, "square-open", 8))


def gamma_curves(grad_rows: Sequence[Mapping], byte_rows: Sequence[Mapping] = (), *, title: str | None = None) -> go.Figure:
    """Left: relative weight-gradient error vs gamma (one line per strategy).

    Right: bytes kept relative to the dense tensor: this kit's record and the
    published format (values + int32 indices). Rows as from
    :func:`dropit.lab.notebook.teach.grad_error_vs_gamma` / ``kept_bytes_vs_gamma``.
    """
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("weight-gradient error vs dense autograd", "bytes kept / dense bytes")
    )
    for i, (strategy, rows) in enumerate(_by(grad_rows, "strategy").items()):
        rows = sorted(rows, key=lambda r: r["gamma"])
        dash, width, symbol, size = _STRATEGY_STYLES[i % len(_STRATEGY_STYLES)]  # strategies that coincide stay visible
        fig.add_trace(
            go.Scatter(x=[r["gamma"] for r in rows], y=[r["weight_rel_error"] for r in rows], mode="lines+markers",
                       name=f"grad error ({strategy})", line=dict(dash=dash, width=width),
                       marker=dict(symbol=symbol, size=size)),
            1, 1,
        )
    for strategy, rows in _by(byte_rows, "strategy").items():
        rows = sorted(rows, key=lambda r: r["gamma"])
        g = [r["gamma"] for r in rows]
        fig.add_trace(go.Scatter(x=g, y=[r["kept_bytes"] / r["dense_bytes"] for r in rows], mode="lines+markers", name=f"this kit ({strategy})"), 1, 2)
        fig.add_trace(
            go.Scatter(x=g, y=[r["published_bytes"] / r["dense_bytes"] for r in rows], mode="lines", line_dash="dot", name=f"values + int32 index ({strategy})"),
            1, 2,
        )
    if byte_rows:
        fig.add_hline(y=1.0, line_color=PAPER_COLOR, line_dash="dash", annotation_text="dense", row=1, col=2)
    fig.update_xaxes(title_text="dropping rate γ", range=[0, 1])
    fig.update_yaxes(title_text="‖ΔdW‖ / ‖dW‖", row=1, col=1)
    fig.update_yaxes(title_text="ratio", row=1, col=2)
    fig.update_layout(title=title or "What γ costs and saves", height=400)
    return fig


def cache_vs_gamma_figure(rows: Sequence[Mapping], *, title: str | None = None) -> go.Figure:
    """A model's bytes kept for backward vs gamma (rows from ``teach.cache_vs_gamma``)."""
    plain = [r for r in rows if r.get("gamma") is None]
    pts = sorted((r for r in rows if r.get("gamma") is not None), key=lambda r: r["gamma"])
    fig = go.Figure(go.Scatter(x=[r["gamma"] for r in pts], y=[r["cache_bytes"] / MiB for r in pts], mode="lines+markers", name="DropIT"))
    if plain:
        fig.add_hline(y=plain[0]["cache_bytes"] / MiB, line_dash="dash", line_color=PAPER_COLOR, annotation_text="plain model")
    fig.update_layout(title=title or "Bytes kept for backward vs γ", xaxis_title="dropping rate γ", yaxis_title="MiB", height=380)
    return fig


# ================================================================== quickstart.ipynb and memory.ipynb: per-layer memory


# Repeated prefixes of the usual model families' layer names, shortened for the per-layer charts.
_SHORT_NAMES = (
    (r"^encoder\.layers\.encoder_layer_(\d+)\.", r"block \1."),  # torchvision ViT
    (r"^(?:blocks|encoder\.layer|transformer\.h|model\.layers|h)\.(\d+)\.", r"block \1."),  # timm, Hugging Face
    (r"self_attention|self_attn|attention", "attn"),
)
SHORT_NAME_CHARS = 26


def short_layer_name(name: str, *, width: int = SHORT_NAME_CHARS) -> str:
    """``"encoder.layers.encoder_layer_11.mlp.0"`` -> ``"block 11.mlp.0"``; longer than ``width``: its tail after "…"."""
    import re

    name = name or "<root>"
    for pattern, repl in _SHORT_NAMES:
        name = re.sub(pattern, repl, name)
    return name if len(name) <= width else "…" + name[-(width - 1):]


def layer_memory_bars(rows, *, title: str | None = None, top: int | None = None) -> go.Figure:
    """Bytes kept for backward per layer, in MiB: one horizontal bar per layer and series, first layer on top.

    ``rows`` is one list of the meter's rows (``CacheReport.to_rows()``: name,
    kind, bytes, dense_bytes) or ``{label: rows}`` to compare models side by
    side (e.g. plain vs DropIT). ``top`` keeps the largest layers (by the
    first series). Layers DropIT stored compactly also show their dense size.
    Names are shortened (:func:`short_layer_name`; the full name is in the hover) and the
    figure grows with the number of layers, so a ViT's 75 stay legible.
    """
    series: Mapping[str, Sequence[Mapping]] = rows if isinstance(rows, Mapping) else {"kept": rows}
    first = next(iter(series.values()), [])
    order = [r["name"] or "<root>" for r in first]
    for rs in series.values():
        order += [r["name"] or "<root>" for r in rs if (r["name"] or "<root>") not in order]
    if top is not None:
        size = {r["name"] or "<root>": r["bytes"] for r in first}
        order = sorted(order, key=lambda n: size.get(n, 0), reverse=True)[:top]
    labels = _unique([short_layer_name(n) for n in order])
    fig = go.Figure()
    for label, rs in series.items():
        by_name = {r["name"] or "<root>": r for r in rs}
        hover = [f"{n} ({by_name[n].get('kind', '')})" if n in by_name else n for n in order]
        fig.add_trace(go.Bar(y=labels, x=[by_name[n]["bytes"] / MiB if n in by_name else 0 for n in order], name=label,
                             orientation="h", hovertext=hover, hovertemplate="%{hovertext}: %{x:.3g} MiB<extra>" + label + "</extra>"))
        dense = [by_name[n].get("dense_bytes", 0) / MiB if n in by_name else 0 for n in order]
        if any(dense):
            fig.add_trace(go.Scatter(y=labels, x=dense, mode="markers", marker_symbol="line-ns-open", marker_size=14,
                                     name=f"{label}: dense size of dropped inputs", hovertext=hover,
                                     hovertemplate="%{hovertext}: dense %{x:.3g} MiB<extra></extra>"))
    bars = sum(1 for t in fig.data if t.type == "bar") or 1
    fig.update_layout(
        title=title or "Bytes kept for backward, per layer",
        xaxis_title="MiB", barmode="group", bargap=0.25, legend=dict(orientation="h", y=1.0, x=0, yanchor="bottom"),
        height=160 + len(order) * (6 + 14 * bars), margin=dict(l=10, r=20, t=90, b=50),
        yaxis=dict(autorange="reversed", automargin=True, type="category"),
    )
    return fig


def _unique(names: list[str]) -> list[str]:
    """Shortened names made distinct again (a category axis would merge equal ones)."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


# ================================================================== explore.ipynb: the lab bench


BENCH_PANELS = ("train loss", "top-1 %: train running mean, validation ± SE ◆",
                "kept for backward (MiB per step)")
RUN_TRACES = ("loss", "train_top1", "val_top1", "kept_mib")  # each run's traces, in this order
_PANEL_OF = {"loss": 1, "train_top1": 2, "val_top1": 2, "kept_mib": 3}
BENCH_PLACEHOLDERS = 3  # an empty bench's traces: one per panel, so plotly.js lays every panel out


def bench_figure(*, title: str | None = None) -> go.Figure:
    """The empty per-step panels that runs are drawn into, side by side (one colour per run).

    No width is set: the figure takes the width of the notebook. Each panel holds one empty
    placeholder trace (``meta={"placeholder": True}``), so all three are laid out before the first run.
    """
    fig = make_subplots(rows=1, cols=3, subplot_titles=BENCH_PANELS, horizontal_spacing=0.07)
    for col in (1, 2, 3):  # plotly.js lays out only panels that hold a trace: one empty trace each
        fig.add_trace(go.Scatter(x=[], y=[], showlegend=False, hoverinfo="skip", meta={"placeholder": True}), 1, col)
    fig.update_xaxes(title_text="step", autorange=True)
    for col in (2, 3):  # accuracy and memory from zero, so differences read at scale
        fig.update_yaxes(rangemode="tozero", row=1, col=col)
    fig.update_yaxes(autorange=True)
    fig.update_layout(title=title or "Runs side by side", height=420, autosize=True,
                      margin=dict(l=50, r=20, t=70, b=40), legend=dict(orientation="h", y=-0.22, x=0),
                      uirevision="bench-0")  # keep the user's zoom while traces update (until cleared)
    return fig


class RunTraces:
    """One run's four traces in a bench figure, by name: ``loss``, ``train_top1``, ``val_top1``, ``kept_mib``.

    :meth:`show` sets them all from a history of plain lists in one batched update."""

    def __init__(self, fig: go.Figure, traces: Sequence[Any]):
        self.fig = fig
        self.loss, self.train_top1, self.val_top1, self.kept_mib = traces

    def show(self, h: Mapping[str, Sequence]) -> None:
        """``h``: ``step``, ``loss``, ``train_top1``, ``kept_mib`` per step; ``val_step``, ``val_top1``, ``val_se``."""
        with self.fig.batch_update():
            self.loss.x, self.loss.y = tuple(h["step"]), tuple(h["loss"])
            self.train_top1.x, self.train_top1.y = tuple(h["step"]), tuple(h["train_top1"])
            self.val_top1.x, self.val_top1.y = tuple(h["val_step"]), tuple(h["val_top1"])
            self.val_top1.error_y.array = tuple(h["val_se"])
            self.kept_mib.x, self.kept_mib.y = tuple(h["step"]), tuple(h["kept_mib"])


def add_run_traces(fig: go.Figure, name: str, color: str, *, plain: bool = False) -> RunTraces:
    """Append one run's four empty traces (:data:`RUN_TRACES`) to a bench figure; they are returned by name.

    The run's colour is the same in every panel; the legend has one entry per run.
    """
    for key in RUN_TRACES:
        mode = "markers" if key == "val_top1" else "lines"
        fig.add_trace(
            go.Scatter(x=[], y=[], mode=mode, name=name, legendgroup=name, showlegend=key == "loss",
                       line=dict(color=color, width=2 if plain else 1.5), meta={"run": name, "series": key},
                       marker=dict(color=color, symbol="diamond", size=9),
                       error_y=dict(type="data", array=[], color=color, thickness=1.5, width=4) if key == "val_top1" else None,
                       hovertemplate=f"{name}<br>step %{{x}}: %{{y:.3g}}<extra>{key}</extra>"),
            1, _PANEL_OF[key],
        )
    return RunTraces(fig, fig.data[-len(RUN_TRACES):])


class BenchFigure:
    """The explore bench's figure and the runs drawn in it: it owns their traces, so no caller counts indices.

    ``BenchFigure(go.FigureWidget(bench_figure()))`` in the notebook, any ``go.Figure`` in tests::

        bf = BenchFigure(fig)
        traces = bf.add_run("#1 resnet_mini · plain", "#222222", plain=True)   # a RunTraces
        traces.show(history); bf.clear()        # every run gone, the axes back to autorange
    """

    def __init__(self, fig: go.Figure | None = None):
        self.fig = bench_figure() if fig is None else fig
        self.runs: dict[str, RunTraces] = {}
        self._clears = 0

    def add_run(self, name: str, color: str, *, plain: bool = False) -> RunTraces:
        with self.fig.batch_update():
            traces = add_run_traces(self.fig, name, color, plain=plain)
        self.runs[name] = traces
        return traces

    def clear(self) -> None:
        """Remove every run's traces and reset the axes to fit what comes next (a zoom is forgotten too)."""
        self._clears += 1
        with self.fig.batch_update():
            self.fig.data = [t for t in self.fig.data if (t.meta or {}).get("placeholder")]
            self.fig.update_xaxes(autorange=True)
            self.fig.update_yaxes(autorange=True)
            self.fig.layout.uirevision = f"bench-{self._clears}"
        self.runs.clear()


_DASHES = ("solid", "dot", "dash", "dashdot")
PLAIN_X = -0.1  # where the plain reference stands on the γ axis, left of γ = 0


def _points(rows: Sequence[Mapping]) -> list[dict]:
    """Rows of one strategy (or the plain runs) grouped by γ: each group's mean top-1 ± its error over its distinct
    seeds that finished their schedule (reruns and stopped runs are not pooled: :meth:`RunBook.row`'s ``complete``
    and ``rerun_of``), its kept MiB, its verdict against plain (the rows' ``within_noise``, from
    :func:`dropit.lab.stats.seed_difference`), and the first run's colour and name."""
    out = []
    for gamma, rs in sorted(_by(rows, "gamma").items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
        seeds = [r for r in rs if r.get("complete", True) and r.get("rerun_of") is None]
        scored = [r for r in seeds if r.get("top1") is not None and r.get("test_images")]
        book = next((r for r in rs if r.get("mean_top1") is not None), None)  # the run book's mean over the recipe's seeds
        if book is not None:  # a rerun of a seed run before the sweep still points at that seed's estimate
            est = stats.Estimate(book["mean_top1"], book["mean_top1_err"], book["mean_images"], book["mean_seeds"])
            scored = scored or [book]
        else:
            est = stats.estimate([r["top1"] for r in scored], n_images=min(r["test_images"] for r in scored)) if scored else None
        kept = [r["kept_mib"] for r in rs if r.get("kept_mib") is not None]
        verdicts = [r["within_noise"] for r in rs if r.get("within_noise") is not None]
        out.append({"gamma": gamma, "est": est, "kept_mib": sum(kept) / len(kept) if kept else None,
                    "within_noise": verdicts[0] if verdicts else None,
                    "color": rs[0]["color"], "name": rs[0]["name"] + (f" (+{len(scored) - 1} seeds)" if len(scored) > 1 else "")})
    return out


def _summary_trace(pts: list[dict], key: str, *, x: list, name: str, line: dict | None, symbols: list, **kw) -> go.Scatter:
    top1 = key == "top1"
    y = [(p["est"].value if p["est"] else None) if top1 else p["kept_mib"] for p in pts]
    err = dict(type="data", array=[p["est"].error if p["est"] else None for p in pts], thickness=1.5, width=5) if top1 else None
    return go.Scatter(x=x, y=y, mode="lines+markers" if line else "markers", name=name, line=line, error_y=err,
                      marker=dict(color=[p["color"] for p in pts], size=11, symbol=symbols, line=dict(width=2, color=[p["color"] for p in pts])),
                      text=[p["name"] for p in pts], hovertemplate="%{text}<br>%{y:.3g}<extra></extra>", **kw)


def sweep_summary_figure(rows: Sequence[Mapping], *, title: str | None = None) -> go.Figure:
    """Kept memory and validation top-1 (± its error) against γ, one line per strategy; the plain run as a
    square left of γ = 0 with a dashed line across, and its noise band in the top-1 panel.

    ``rows`` as from :meth:`dropit.lab.notebook.bench.RunBook.table`; runs repeated with several seeds are
    one point, ± their spread. A DropIT point within noise of plain (:func:`dropit.lab.stats.within_noise`)
    is drawn open; a strategy whose points are all within noise gets no line (no trend to draw), and the
    top-1 panel says "within noise at n test images".
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("kept for backward (MiB per step) vs γ", "validation top-1 (%) ± error vs γ"),
                        horizontal_spacing=0.08)
    ok = [r for r in rows if r.get("status") != "failed"]
    if not ok:  # plotly.js lays out only panels that hold a trace
        for col in (1, 2):
            fig.add_trace(go.Scatter(x=[], y=[], showlegend=False, hoverinfo="skip", meta={"placeholder": True}), 1, col)
    plain = _points([r for r in ok if r.get("gamma") is None])
    ref = plain[0]["est"] if plain else None
    noisy, total, n_test = 0, 0, None
    for i, (strategy, rs) in enumerate(_by([r for r in ok if r.get("gamma") is not None], "strategy").items()):
        pts = _points(rs)
        quiet = [p["within_noise"] if p["within_noise"] is not None
                 else ref is not None and p["est"] is not None and stats.within_noise(p["est"], ref) for p in pts]
        noisy, total = noisy + sum(quiet), total + len(quiet)
        n_test = min([p["est"].n_images for p in pts if p["est"]] + ([ref.n_images] if ref else []), default=n_test)
        line = dict(color="#555555", dash=_DASHES[i % len(_DASHES)])
        for col, key in ((1, "kept_mib"), (2, "top1")):
            trend = line if key == "kept_mib" or not all(quiet) else None
            fig.add_trace(_summary_trace(pts, key, x=[p["gamma"] for p in pts], name=f"DropIT, {strategy}", line=trend,
                                         symbols=["circle-open" if q and key == "top1" else "circle" for q in quiet],
                                         legendgroup=strategy, showlegend=col == 1), 1, col)
    if plain:
        p = plain[0]
        label = f"plain ({p['name'].split(' ')[0]})"
        for col, key in ((1, "kept_mib"), (2, "top1")):
            fig.add_trace(_summary_trace([p], key, x=[PLAIN_X], name=label, line=None, symbols=["square"],
                                         legendgroup="plain", showlegend=col == 1), 1, col)
            y = p["kept_mib"] if key == "kept_mib" else (ref.value if ref else None)
            if y is not None:
                fig.add_hline(y=y, line_dash="dash", line_color=p["color"], row=1, col=col)
        if ref is not None:
            fig.add_hrect(y0=ref.value - stats.Z_NOISE * ref.error, y1=ref.value + stats.Z_NOISE * ref.error, row=1, col=2,
                          fillcolor=p["color"], opacity=0.08, line_width=0)
    if noisy:
        words = (f"every γ within noise at {n_test} test images: no trend to read" if noisy == total
                 else f"open markers: within noise at {n_test} test images")
        fig.add_annotation(text=words, xref="x2 domain", yref="y2 domain", x=0.99, y=0.99, showarrow=False,
                           xanchor="right", yanchor="top", font=dict(size=12), bgcolor="rgba(255,255,255,0.85)")
    ticks = dict(tickvals=[PLAIN_X, 0.2, 0.4, 0.6, 0.8, 1.0], ticktext=["plain = γ 0", "0.2", "0.4", "0.6", "0.8", "1"])
    fig.update_xaxes(title_text="dropping rate γ", range=[PLAIN_X - 0.08, 1.0], **ticks)
    fig.update_yaxes(rangemode="tozero")  # savings drawn to scale
    fig.update_yaxes(title_text="MiB", row=1, col=1)
    fig.update_yaxes(title_text="%", row=1, col=2)
    fig.update_layout(title=title or "Sweep: what γ saves and what it costs", height=420, autosize=True,
                      margin=dict(l=50, r=20, t=70, b=40), legend=dict(orientation="h", y=-0.25, x=0))
    return fig


# ================================================================== memory.ipynb: the Cache column and the frontier


def cache_column_figure(rows: Sequence[Mapping], *, title: str | None = None) -> go.Figure:
    """The Cache (MB) column: kept-for-backward (ours), CUDA peak (ours, if any), paper's.

    ``rows`` as from ``dropit.lab.measure.cache.cache_column()``.
    """
    names = []
    for r in rows:
        model = str(r["model"])
        if r.get("dropit"):
            model = (model if "DropIT" in model else model + " w. DropIT") + f" γ={r['gamma']}"
        names.append(f"{r['table']} {model}")
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[r.get("kept_mb") for r in rows], name="ours: kept for backward (meter)"))
    if any(r.get("peak_mb") is not None for r in rows):
        fig.add_trace(go.Bar(x=names, y=[r.get("peak_mb") for r in rows], name="ours: CUDA peak (paper's protocol)"))
    fig.add_trace(go.Bar(x=names, y=[r.get("paper_mb") for r in rows], name="paper (CUDA peak)", marker_color=PAPER_COLOR))
    fig.update_layout(
        title=title or "Cache (MB), batch 128, fp32, one training-mode forward",
        yaxis_title="MB (2^20 bytes)",
        barmode="group",
        height=440,
        xaxis_tickangle=-30,
    )
    return fig


def frontier_figure(rows: Sequence[Mapping], *, memory: str = "kept_ratio", title: str | None = None) -> go.Figure:
    """Memory against step time, both relative to the plain model, one marker per configuration.

    ``rows`` as from ``dropit.lab.measure.frontier.run()``; ``memory`` is
    ``"kept_ratio"`` (forward-kept) or ``"peak_ratio"`` (whole-step peak).
    Down and left is better; one colour per model and mode (compiled rows, against compiled plain, as
    diamonds), configurations as labels.
    """
    what = {"kept_ratio": "forward-kept memory", "peak_ratio": "whole-step peak memory"}[memory]
    fig = go.Figure()
    for model, by_model in _by(rows, "model").items():
        for compiled, rs in _by(by_model, "compiled").items():
            name = f"{model}, compiled" if compiled else str(model)
            fig.add_trace(go.Scatter(
                x=[r["time_ratio"] for r in rs], y=[r[memory] for r in rs], mode="markers+text", name=name,
                text=[r["config"] for r in rs], textposition="top right", marker_size=11,
                marker_symbol="diamond" if compiled else "circle",
                error_x=dict(type="data", symmetric=False, array=[r["time_q3"] - r["time_ratio"] for r in rs],
                             arrayminus=[r["time_ratio"] - r["time_q1"] for r in rs], thickness=1),
                hovertemplate="%{text}<br>time %{x:.3f}x<br>memory %{y:.3f}<extra>" + name + "</extra>",
            ))
    fig.update_layout(
        title=title or f"{what} vs step time, each against its baseline (compiled rows: compiled plain)",
        xaxis_title="step time / plain (median over interleaved rounds; bars: quartiles)",
        yaxis_title=f"{what} / plain", yaxis_rangemode="tozero", height=520,
    )
    return fig


# ================================================================== the table notebooks: training curves of their rows


def training_figure(*, title: str | None = None) -> go.Figure:
    """The empty three-panel layout: loss, top-1 (%), cache memory (MiB)."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("train loss", "top-1 (%)", "cache kept for backward (MiB)"))
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title or "Training", height=380)
    return fig


def _runs(runs) -> dict[str, Mapping]:
    if isinstance(runs, Mapping) and "epochs" in runs:
        runs = [runs]
    if isinstance(runs, Mapping):
        return dict(runs)
    out: dict[str, Mapping] = {}
    for m in runs:
        label = base = _run_label(m)
        n = 1
        while label in out:  # several runs may share a label ("quick")
            n += 1
            label = f"{base} ({n})"
        out[label] = m
    return out


def _run_label(metrics: Mapping) -> str:
    """A short legend name: the paper row a run stands for, else its label or model, + DropIT."""
    cfg = metrics.get("config", {}) or {}
    name = str(cfg.get("paper_row") or cfg.get("label") or cfg.get("model", "run"))
    if cfg.get("dropit") and "dropit" not in name.lower():
        name += f" DropIT γ={cfg.get('dropit_gamma')}"
    return name


def training_curves(runs, *, title: str | None = None) -> go.Figure:
    """Per-epoch train loss, top-1 and cache memory of one or more runs.

    ``runs``: a metrics dict (``metrics.json``), a list of them, or
    ``{label: metrics}``.
    """
    fig = training_figure(title=title)
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    for i, (label, m) in enumerate(_runs(runs).items()):
        epochs = m.get("epochs", [])
        ep = [e.get("epoch", j + 1) for j, e in enumerate(epochs)]
        color = palette[i % len(palette)]
        for col, keys, scale in ((1, ("train_loss",), 1.0), (2, ("val_top1", "top1"), 1.0), (3, ("cache_bytes",), 1 / MiB)):
            vals = [next((e[k] for k in keys if e.get(k) is not None), None) for e in epochs]
            pts = [(x, v * scale) for x, v in zip(ep, vals) if v is not None]
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=label,
                    legendgroup=label, showlegend=col == 1, line_color=color,
                ),
                1, col,
            )
    return fig
