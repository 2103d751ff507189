"""The memory notebook's planner: a target slider that redraws the measured frontier and marks ``dropit.plan``'s pick.

    planned = plan_model("resnet_mini", batch_size=16)       # every candidate measured and timed once
    plan_figure(planned, target=0.3)                         # the frontier, the target line, the pick
    planner_explorer(planned, target=0.3)                    # the same with a slider (ipywidgets)

Moving the target re-picks from the measured table (``Plan.pick_for``): nothing
is measured again. ipywidgets is imported only inside :func:`planner_explorer`,
so the figure and the pick work without a front end.
"""
from __future__ import annotations

import plotly.graph_objects as go
import torch

import dropit
from dropit.lab.models.catalog import build_model, default_image_size
from dropit.planner import Plan


def plan_model(name: str, *, batch_size: int = 16, image_size: int | None = None, rounds: int = 3,
               **plan_options) -> Plan:
    """``dropit.plan`` of a lab model on a random batch, every candidate timed (so any target can be picked)."""
    torch.manual_seed(0)
    model = build_model(name, 100, image_size=image_size)
    size = image_size or default_image_size(name)
    x, y = torch.randn(batch_size, 3, size, size), torch.randint(0, 100, (batch_size,))
    return dropit.plan(model, x, lambda out: torch.nn.functional.cross_entropy(out, y), target=1.0, time_all=True,
                       rounds=rounds, **plan_options)


def pick_at(planned: Plan, target: float) -> str | None:
    """The name of the pick at ``target`` (a fraction of plain's kept bytes), None where nothing fits."""
    try:
        return planned.pick_for(target).name
    except ValueError:
        return None


def plan_figure(planned: Plan, *, target: float, title: str | None = None) -> go.Figure:
    """Kept bytes against step time (both over plain's) of every candidate, each labelled with its name, the target
    as a line, the pick starred."""
    rows = [r for r in planned.rows if r["time_ratio"] is not None]
    pick = pick_at(planned, target)
    fits = [r for r in rows if r["kept_ratio"] <= target]
    over = [r for r in rows if r["kept_ratio"] > target]
    fig = go.Figure()
    for group, label, color in ((fits, "within the target", "#1f77b4"), (over, "over the target", "#bbbbbb")):
        fig.add_trace(go.Scatter(
            x=[r["time_ratio"] for r in group], y=[r["kept_ratio"] for r in group], mode="markers+text", name=label,
            text=[r["name"] for r in group], textposition="bottom center", textfont=dict(size=10, color="#555"),
            marker=dict(size=9, color=color),  # every candidate labelled, not only the pick
            hovertemplate="%{text}<br>time %{x:.3f}x<br>kept %{y:.3f}<extra></extra>"))
    chosen = [r for r in rows if r["name"] == pick]
    fig.add_trace(go.Scatter(
        x=[r["time_ratio"] for r in chosen], y=[r["kept_ratio"] for r in chosen], mode="markers+text", name="pick",
        text=[r["name"] for r in chosen], textposition="top right",
        marker=dict(size=18, symbol="star", color="#d62728")))
    fig.add_hline(y=target, line_dash="dash", annotation_text=f"target {target:.2f}")
    fig.update_layout(
        title=title or (f"target {target:.2f} of plain's kept bytes: " + (pick or "no candidate fits")),
        xaxis_title="step time / plain (median of interleaved rounds)", yaxis_title="kept for backward / plain",
        yaxis_rangemode="tozero", height=480)
    return fig


def planner_explorer(planned: Plan, *, target: float = 0.3):
    """A target slider redrawing :func:`plan_figure`; ``box.redraw()`` and ``box.pick`` for tests and scripts."""
    import ipywidgets as W

    low = min(r["kept_ratio"] for r in planned.rows)
    fig = go.FigureWidget(plan_figure(planned, target=target))
    slider = W.FloatSlider(value=target, min=round(max(0.01, low * 0.9), 2), max=1.0, step=0.01,
                           description="target", continuous_update=False)
    box = W.VBox([slider, fig])

    from dropit.lab.notebook.widgets import swap_figure

    def redraw(_=None):
        swap_figure(fig, plan_figure(planned, target=slider.value))  # the one helper every widget redraws through
        box.pick = pick_at(planned, slider.value)

    slider.observe(redraw, names="value")
    box.redraw, box.slider, box.figure = redraw, slider, fig
    box.pick = pick_at(planned, target)
    return box
