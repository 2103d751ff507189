"""The memory notebook's planner: a target slider that redraws the measured frontier and marks ``dropit.plan``'s pick.

    planned = plan_model("resnet_mini", batch_size=16)       # every candidate measured and timed once
    plan_figure(planned, target=0.3)                         # the frontier, the target line, the pick
    planner_explorer(planned, target=0.3)                    # the same with a slider (ipywidgets)

Moving the target, or choosing the most faithful candidate (the smallest
gradient bias) within a step-time budget instead of the fastest, re-picks from
the measured table (:func:`dropit.planner.choose`): nothing is measured again. ipywidgets is imported only inside :func:`planner_explorer`,
so the figure and the pick work without a front end.
"""
from __future__ import annotations

import plotly.graph_objects as go
import torch

import dropit
from dropit.lab.models.catalog import build_model, default_image_size
from dropit.planner import Plan, choose


def plan_model(name: str, *, batch_size: int = 16, image_size: int | None = None, rounds: int = 3,
               **plan_options) -> Plan:
    """``dropit.plan`` of a lab model on a random batch, every candidate timed (so any target can be picked)."""
    torch.manual_seed(0)
    model = build_model(name, 100, image_size=image_size)
    size = image_size or default_image_size(name)
    x, y = torch.randn(batch_size, 3, size, size), torch.randint(0, 100, (batch_size,))
    return dropit.plan(model, x, lambda out: torch.nn.functional.cross_entropy(out, y), target=1.0, time_all=True,
                       rounds=rounds, **plan_options)


def pick_at(planned: Plan, target: float, objective: str = "fastest", max_time_ratio: float | None = None) -> str | None:
    """The name of the pick at ``target`` (a fraction of plain's saved bytes), the fastest or (``"faithful"``) the
    smallest gradient bias within ``max_time_ratio``; None where nothing fits."""
    try:
        return planned.rows[choose(planned.rows, int(target * planned.plain_bytes), planned.metric,
                                   objective=objective, max_time_ratio=max_time_ratio)].name
    except ValueError:
        return None


def plan_figure(planned: Plan, *, target: float, title: str | None = None, objective: str = "fastest",
                max_time_ratio: float | None = None) -> go.Figure:
    """Saved bytes against step time (both over plain's) of every candidate, each labelled with its name, the target
    as a line, the pick starred."""
    rows = [r for r in planned.rows if r.time_ratio is not None]
    pick = pick_at(planned, target, objective, max_time_ratio)
    fits = [r for r in rows if r.saved_ratio <= target]
    over = [r for r in rows if r.saved_ratio > target]
    fig = go.Figure()
    for group, label, color in ((fits, "within the target", "#1f77b4"), (over, "over the target", "#bbbbbb")):
        fig.add_trace(go.Scatter(
            x=[r.time_ratio for r in group], y=[r.saved_ratio for r in group], mode="markers+text", name=label,
            text=[r.name for r in group], textposition="bottom center", textfont=dict(size=10, color="#555"),
            customdata=[r.grad_bias if r.grad_bias is not None else r.grad_error for r in group],
            marker=dict(size=9, color=color),  # every candidate labelled, not only the pick
            hovertemplate="%{text}<br>time %{x:.3f}x<br>saved %{y:.3f}<br>gradient bias %{customdata:.2g}"
                          "<extra></extra>"))
    chosen = [r for r in rows if r.name == pick]
    fig.add_trace(go.Scatter(
        x=[r.time_ratio for r in chosen], y=[r.saved_ratio for r in chosen], mode="markers+text", name="pick",
        text=[r.name for r in chosen], textposition="top right",
        marker=dict(size=18, symbol="star", color="#d62728")))
    fig.add_hline(y=target, line_dash="dash", annotation_text=f"target {target:.2f}")
    if max_time_ratio is not None and objective == "faithful":
        fig.add_vline(x=max_time_ratio, line_dash="dot", annotation_text=f"step time {max_time_ratio:.2f}x")
    how = "most faithful" if objective == "faithful" else "fastest"
    fig.update_layout(
        title=title or (f"target {target:.2f} of plain's saved bytes, {how}: " + (pick or "no candidate fits")),
        xaxis_title="step time / plain (median of interleaved rounds)", yaxis_title="saved for backward / plain",
        yaxis_rangemode="tozero", height=480)
    return fig


def planner_explorer(planned: Plan, *, target: float = 0.3):
    """A target slider redrawing :func:`plan_figure`; ``box.redraw()`` and ``box.pick`` for tests and scripts."""
    import ipywidgets as W

    low = min(r.saved_ratio for r in planned.rows)
    slowest = max(r.time_ratio for r in planned.rows if r.time_ratio is not None)
    fig = go.FigureWidget(plan_figure(planned, target=target))
    slider = W.FloatSlider(value=target, min=round(max(0.01, low * 0.9), 2), max=1.0, step=0.01,
                           description="target", continuous_update=False)
    objective = W.ToggleButtons(options=[("fastest", "fastest"), ("most faithful", "faithful")], value="fastest",
                                description="pick")
    budget = W.FloatSlider(value=round(slowest + 0.01, 2), min=1.0, max=round(slowest + 0.01, 2), step=0.01,
                           description="step time ≤", continuous_update=False, disabled=True)
    box = W.VBox([W.HBox([slider, objective, budget]), fig])

    from dropit.lab.notebook.widgets import swap_figure

    def choice():
        faithful = objective.value == "faithful"
        return objective.value, (budget.value if faithful else None)

    def redraw(_=None):
        budget.disabled = objective.value != "faithful"
        how, limit = choice()
        swap_figure(fig, plan_figure(planned, target=slider.value, objective=how, max_time_ratio=limit))
        box.pick = pick_at(planned, slider.value, how, limit)

    for control in (slider, objective, budget):
        control.observe(redraw, names="value")
    box.redraw, box.slider, box.objective, box.budget, box.figure = redraw, slider, objective, budget, fig
    box.pick = pick_at(planned, target)
    return box
