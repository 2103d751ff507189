"""Plotly figures of the claim study: curves per arm with a band across seeds, the statistics table, the mechanism.

    runs = load_runs("results/claim"); summary = json.load(open("results/claim/claim.json"))
    curves_figure(runs, "cnn").show()           # test top-1 and training loss against epoch, per arm
    stats_table_figure(summary).show()          # mean ± sd per arm, paired difference to plain, 95% CI, verdict
    mechanism_figure(rows).show()               # gradient noise and DropIT's bias against gamma

Only notebooks import this module (it imports plotly).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from dropit.lab.claim.markdown import mechanism_strategies
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
                                     name=f"{arm} ({b['seeds']} seeds)", legendgroup=arm, showlegend=col == 1),
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
            rows.append({"protocol": r["protocol"], "arm": r["arm"], "metric": _METRIC_NAMES[metric],
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


def mechanism_figure(rows: Sequence[Mapping], *, title: str | None = None) -> go.Figure:
    """Against gamma, one line per training step: the minibatch noise (plain, DropIT), DropIT's bias², the mse to exact."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("noise: trace of the minibatch gradient's covariance",
                                                        "distance to the exact gradient"))
    for i, step in enumerate(sorted({r["step"] for r in rows})):
        mine = sorted((r for r in rows if r["step"] == step), key=lambda r: r["gamma"])
        g = [r["gamma"] for r in mine]
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        traces = (
            (1, "noise_plain", dict(dash="dot"), "plain"), (1, "noise_dropit", {}, "DropIT"),
            (2, "bias_sq", dict(dash="dash"), "DropIT bias²"), (2, "mse_dropit", {}, "DropIT mse"),
            (2, "mse_plain", dict(dash="dot"), "plain mse"),
        )
        for col, key, dash, what in traces:
            y = [r["bias"] ** 2 if key == "bias_sq" else r[key] for r in mine]
            fig.add_trace(go.Scatter(x=g, y=y, mode="lines+markers", line=dict(color=color, **dash),
                                     name=f"step {step}: {what}"), row=1, col=col)
    fig.update_xaxes(title_text="γ (dropping rate)")
    fig.update_yaxes(type="log")
    fig.update_layout(title=title or f"the paper's mechanism: gradient noise and DropIT's bias ({mechanism_strategies(rows)})",
                      height=420)
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
    mechanism = mechanism_figure_of(mechanism_json)
    if mechanism is not None:
        out.append(write_figure(study_dir / "figures" / "mechanism.plotly.json", mechanism))
    return out


if __name__ == "__main__":  # python -m dropit.lab.claim.figures STUDY_DIR [MECHANISM_JSON]
    import sys

    for path in write_figures(*sys.argv[1:3]):
        print("wrote", path)
