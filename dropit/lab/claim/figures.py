"""Plotly figures of the claim study: curves per arm with a band across seeds, the statistics table, the mechanism.

    runs = load_runs("docs/claim"); summary = json.load(open("docs/claim/claim.json"))
    answer_figure(summary).show()               # the answer: top-1 − plain per protocol and arm, 95% interval, zero line
    curves_figure(runs, "cnn").show()           # test top-1 and training loss against epoch, per arm
    stats_table_figure(summary).show()          # mean ± sd per arm, paired difference to plain, 95% CI, verdict
    mechanism_figure(rows).show()               # DropIT's bias and its noise over plain's against gamma, per step

Arms are named from their settings (:func:`dropit.lab.claim.markdown.arm_name`): ``mink γ 0.8``,
``sampled γ 0.9 + int8``.

Only notebooks import this module (it imports plotly).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from dropit.lab.claim.markdown import arm_label, mechanism_strategies
from dropit.lab.claim.summary import METRICS, table_rows

_METRIC_NAMES = {"top1": "top-1 (%)", "top5": "top-5 (%)", "train_loss": "train loss", "test_loss": "test loss"}


def epoch_bands(runs: Sequence[Mapping], protocol: str, key: str) -> dict[str, dict[str, list]]:
    """Per arm: epochs, the mean of ``key`` over seeds, and its min and max (epochs every seed has)."""
    out = {}
    for arm in dict.fromkeys(r["arm"] for r in runs if r["protocol"] == protocol):
        series = [{e["epoch"]: e[key] for e in r["epochs"] if e.get(key) is not None}
                  for r in runs if r["protocol"] == protocol and r["arm"] == arm]
        epochs = sorted(set.intersection(*(set(s) for s in series)))
        vals = [[s[e] for s in series] for e in epochs]
        out[arm] = {"epoch": epochs, "mean": [sum(v) / len(v) for v in vals], "low": [min(v) for v in vals],
                    "high": [max(v) for v in vals], "seeds": len(series)}
    return out


def curves_figure(runs: Sequence[Mapping], protocol: str, *, title: str | None = None) -> go.Figure:
    """Test top-1 and training loss against epoch: each arm's mean over seeds, a band from the lowest to the highest seed."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test top-1 (%)", "training loss"))
    for col, key in ((1, "val_top1"), (2, "train_loss")):
        for i, (arm, b) in enumerate(epoch_bands(runs, protocol, key).items()):
            color = qualitative.Plotly[i % len(qualitative.Plotly)]
            fig.add_trace(go.Scatter(x=b["epoch"] + b["epoch"][::-1], y=b["high"] + b["low"][::-1], fill="toself",
                                     line=dict(width=0), fillcolor=color, opacity=0.2, hoverinfo="skip",
                                     showlegend=False, legendgroup=arm), row=1, col=col)
            fig.add_trace(go.Scatter(x=b["epoch"], y=b["mean"], mode="lines+markers", line=dict(color=color),
                                     name=f"{arm_label(protocol, arm)} ({b['seeds']} seeds)", legendgroup=arm,
                                     showlegend=col == 1),
                          row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    fig.update_layout(title=title or f"claim study, {protocol}: mean over seeds, band = lowest to highest seed",
                      height=380)
    return fig


def _fmt(x, digits: int = 2, sign: bool = False) -> str:
    return "" if x is None else (f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}")


def stats_rows(summary: Mapping, metrics: Sequence[str] = METRICS) -> list[dict]:
    """Printable rows: protocol, arm, metric, mean ± sd, arm - plain with its 95% CI and the verdict."""
    rows = []
    for metric in metrics:
        for r in table_rows(summary, metric):
            ci = "" if r["ci95_low"] is None else f"[{r['ci95_low']:+.2f}, {r['ci95_high']:+.2f}]"
            rows.append({"protocol": r["protocol"], "arm": arm_label(r["protocol"], r["arm"]), "metric": _METRIC_NAMES[metric],
                         "seeds": r["seeds"], "mean ± sd": f"{_fmt(r['mean'])} ± {_fmt(r['std']) or 'n/a'}",
                         "vs plain": _fmt(r["diff"], sign=True), "95% CI": ci, "verdict": r["verdict"]})
    return rows


def stats_table_figure(summary: Mapping, metrics: Sequence[str] = METRICS) -> go.Figure:
    """:func:`stats_rows` as a plotly table."""
    rows = stats_rows(summary, metrics)
    cols = list(rows[0]) if rows else ["protocol"]
    fig = go.Figure(go.Table(header=dict(values=cols), cells=dict(values=[[r[c] for r in rows] for c in cols])))
    fig.update_layout(title="paired by seed: arm - plain, Student-t 95% interval", height=120 + 28 * len(rows))
    return fig


def answer_figure(summary: Mapping, *, title: str | None = None) -> go.Figure:
    """The study's answer in one chart: per protocol and arm, test top-1 minus plain's, paired by seed, with its
    Student-t 95% interval, and a line at zero. An interval clear of zero is drawn filled, one holding zero open;
    each point's verdict is written beside it."""
    rows = [r for r in table_rows(summary, "top1") if r["diff"] is not None]
    labels = [f"{r['protocol']}: {arm_label(r['protocol'], r['arm'])}" for r in rows]
    has_ci = [r["ci95_low"] is not None for r in rows]
    fig = go.Figure(go.Scatter(
        x=[r["diff"] for r in rows], y=labels, mode="markers+text", name="arm − plain",
        text=[f"{r['diff']:+.2f}  {r['verdict']}" for r in rows], textposition="top center",
        marker=dict(size=11, color="#1f77b4", symbol=["circle-open" if c and r["ci95_low"] <= 0 <= r["ci95_high"] else "circle"
                                                      for r, c in zip(rows, has_ci)]),
        error_x=dict(type="data", symmetric=False, thickness=2, width=6,
                     array=[(r["ci95_high"] - r["diff"]) if c else 0 for r, c in zip(rows, has_ci)],
                     arrayminus=[(r["diff"] - r["ci95_low"]) if c else 0 for r, c in zip(rows, has_ci)]),
        hovertemplate="%{y}<br>%{x:+.2f} points<extra></extra>"))
    fig.add_vline(x=0, line_color="#444", line_dash="dash", annotation_text="plain", annotation_position="top")
    seeds = sorted({r["seeds"] for r in rows})
    fig.update_layout(
        title=title or ("Does DropIT cost accuracy? Test top-1 − plain, paired by seed "
                        f"({'/'.join(map(str, seeds)) or 0} seeds), 95% interval"),
        xaxis_title="top-1 difference from plain (points)", yaxis=dict(autorange="reversed", automargin=True),
        height=160 + 48 * max(len(rows), 1), margin=dict(l=10, r=30, t=80, b=50), showlegend=False)
    return fig


def _spread(values: Sequence[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if abs(hi - lo) < 1e-12 else f"{fmt.format(lo)}–{fmt.format(hi)}"


def mechanism_caption(rows: Sequence[Mapping]) -> str:
    """What the mechanism figure shows, in a sentence computed from its rows: at the largest γ, the bias as a share
    of ‖g‖ and DropIT's noise over plain's, across the steps measured."""
    g = max(r["gamma"] for r in rows)
    top = [r for r in rows if r["gamma"] == g]
    bias = _spread([r["bias_rel"] * 100 for r in top], "{:.0f}")
    ratio = [r["noise_dropit"] / r["noise_plain"] for r in top]
    noise = _spread(ratio, "{:.2f}")
    if max(ratio) < 1:
        verdict = "less noise, bought with a bias that grows with γ"
    elif min(ratio) >= 1:
        verdict = "no less noise, and a bias that grows with γ"
    else:
        verdict = "less noise at some steps only, and a bias that grows with γ"
    return f"At γ {g:g}, DropIT's gradient is biased by {bias}% of ‖g‖ and its noise is {noise}× plain's: {verdict}."


def mechanism_figure(rows: Sequence[Mapping], *, title: str | None = None, max_steps: int = 4) -> go.Figure:
    """Two panels against γ, one line per training step (at most ``max_steps``, spread over those measured):
    DropIT's bias over ‖g‖ (left) and DropIT's minibatch noise over plain's at the same weights (right, 1 = as
    noisy as plain). The title ends with :func:`mechanism_caption`'s takeaway."""
    steps = sorted({r["step"] for r in rows})
    if len(steps) > max_steps:  # the first, the last and evenly between
        steps = [steps[round(i * (len(steps) - 1) / (max_steps - 1))] for i in range(max_steps)]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("bias: ‖E[g_DropIT] − g‖ / ‖g‖ (%)", "noise: DropIT's / plain's (1 = as noisy)"))
    for i, step in enumerate(steps):
        mine = sorted((r for r in rows if r["step"] == step), key=lambda r: r["gamma"])
        g = [r["gamma"] for r in mine]
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        fig.add_trace(go.Scatter(x=g, y=[100 * r["bias_rel"] for r in mine], mode="lines+markers", line=dict(color=color),
                                 name=f"step {step:,}", legendgroup=str(step)), row=1, col=1)
        fig.add_trace(go.Scatter(x=g, y=[r["noise_dropit"] / r["noise_plain"] for r in mine], mode="lines+markers",
                                 line=dict(color=color), name=f"step {step:,}", legendgroup=str(step), showlegend=False),
                      row=1, col=2)
    fig.add_hline(y=1.0, line_dash="dash", line_color="#444", annotation_text="plain", row=1, col=2)
    fig.update_xaxes(title_text="γ (dropping rate)")
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    head = title or f"Less noise, or a biased gradient? ({mechanism_strategies(rows)})"
    fig.update_layout(title=dict(text=f"{head}<br><sup>{mechanism_caption(rows)}</sup>"), height=430,
                      margin=dict(t=110), legend=dict(orientation="h", y=-0.2, x=0))
    return fig


def mechanism_figure_of(path: str | Path | None, *, title: str | None = None) -> go.Figure | None:
    """:func:`mechanism_figure` of a mechanism file (``python -m dropit.lab.claim.mechanism --out``); None without one."""
    if not path or not Path(path).is_file():
        return None
    return mechanism_figure(json.loads(Path(path).read_text())["rows"], title=title)


def write_figures(study_dir: str | Path, mechanism_json: str | Path | None = None) -> list[Path]:
    """The study's figures as ``<study_dir>/figures/*.plotly.json`` (small files to commit); their paths."""
    from dropit.lab.claim.summary import load_runs
    from dropit.lab.io import write_figure

    study_dir = Path(study_dir)
    summary = json.loads((study_dir / "claim.json").read_text())
    runs = load_runs(study_dir)
    out = [write_figure(study_dir / "figures" / f"curves_{p}.plotly.json", curves_figure(runs, p))
           for p in summary["protocols"]]
    out.append(write_figure(study_dir / "figures" / "stats.plotly.json", stats_table_figure(summary)))
    out.append(write_figure(study_dir / "figures" / "answer.plotly.json", answer_figure(summary)))
    mechanism = mechanism_figure_of(mechanism_json)
    if mechanism is not None:
        out.append(write_figure(study_dir / "figures" / "mechanism.plotly.json", mechanism))
    return out


if __name__ == "__main__":  # python -m dropit.lab.claim.figures STUDY_DIR [MECHANISM_JSON]
    import sys

    for path in write_figures(*sys.argv[1:3]):
        print("wrote", path)
