"""The claim study's table in Markdown, beside the paper's numbers: what the README, docs/claim.md and tables.md show.

    print(claim_markdown(json.load(open("docs/claim/claim.json"))))

One row per protocol and arm, every figure read from the summary
(:mod:`dropit.lab.claim.summary`): test top-1 and final training loss as mean
± standard deviation over seeds, each arm's paired difference to plain with
its 95% interval and the computed verdict, and the top-1 still gained over the
last quarter of the epochs. Under it, the paper's single runs of the same
comparison (:data:`dropit.lab.paper.PAPER_ROWS`). :func:`mechanism_markdown`
tables the mechanism measurement (:mod:`dropit.lab.claim.mechanism`).
"""
from __future__ import annotations

from typing import Mapping

from dropit.lab.claim.protocols import ARMS
from dropit.lab.claim.summary import table_rows
from dropit.lab.paper import PAPER_ROWS

def arm_name(settings: Mapping | None, *, markdown: bool = False) -> str | None:
    """An arm named from its DropIT settings, as the README names them: ``"plain"``, ``"mink γ 0.8"``,
    ``"sampled γ 0.9 + int8"`` (``markdown``: ``"DropIT `mink` γ 0.8"``). Any strategy, γ and quantize level
    name themselves, so an arm added to :data:`dropit.lab.claim.protocols.ARMS` later needs no table here.
    None for unknown settings."""
    if settings is None:
        return None
    if not settings.get("dropit"):
        return "plain"
    strategy, gamma = settings.get("dropit_strategy", "?"), settings.get("dropit_gamma")
    quantize = settings.get("dropit_quantize")
    what = f"`{strategy}`" if markdown else str(strategy)
    name = f"{what} γ {gamma:g}" if isinstance(gamma, (int, float)) else what
    name += f" + {quantize}" if quantize else ""
    return f"DropIT {name}" if markdown else name


def arm_label(protocol: str, arm: str, *, markdown: bool = False) -> str:
    """``arm`` of ``protocol`` named from its settings in :data:`dropit.lab.claim.protocols.ARMS` (its id if unknown)."""
    return arm_name(ARMS.get(protocol, {}).get(arm), markdown=markdown) or arm


def _arm(protocol: str, arm: str) -> str:
    return arm_label(protocol, arm, markdown=True)


def _mean_sd(mean, sd, digits: int) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def _diff(row: Mapping, digits: int) -> str:
    if row["diff"] is None:
        return ""
    ci = "" if row["ci95_low"] is None else f" [{row['ci95_low']:+.{digits}f}, {row['ci95_high']:+.{digits}f}]"
    return f"{row['diff']:+.{digits}f}{ci}"


def claim_rows(summary: Mapping) -> list[list[str]]:
    """The table's cells, one list per protocol and arm (header: :data:`HEADER`)."""
    losses = {(r["protocol"], r["arm"]): r for r in table_rows(summary, "train_loss")}
    cells = []
    for r in table_rows(summary, "top1"):
        proto = summary["protocols"][r["protocol"]]
        loss = losses[(r["protocol"], r["arm"])]
        gain = "" if r["last_quarter_gain"] is None else f"{r['last_quarter_gain']:+.2f}"
        cells.append([
            f"{r['protocol']}: {proto['model']}, {proto['epochs']} epochs", _arm(r["protocol"], r["arm"]),
            str(r["seeds"]), _mean_sd(r["mean"], r["std"], 2), _diff(r, 2), r["verdict"],
            _mean_sd(loss["mean"], loss["std"], 3), _diff(loss, 3), loss["verdict"], gain])
    return cells


HEADER = ["protocol", "arm", "seeds", "test top-1 %", "top-1 − plain [95% CI]", "verdict",
          "train loss", "train loss − plain [95% CI]", "verdict (loss)", "top-1 gained in the last quarter"]


def _table(header: list[str], rows: list[list[str]]) -> str:
    rule = ["---" if i < 2 else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(c) + " |" for c in [header, rule, *rows])


TOP1_HEADER = ["protocol", "arm", "seeds", "test top-1 %", "top-1 − plain [95% CI]", "verdict"]


def top1_markdown(summary: Mapping) -> str:
    """The short table: test top-1 per protocol and arm, its paired difference to plain and the verdict."""
    rows = [r[:6] for r in claim_rows(summary)]
    return _table(TOP1_HEADER, rows) if rows else "No finished run in this summary yet (`make claim` runs the study)."


OTHER_HEADER = ["protocol", "arm", "metric", "mean ± sd", "− plain [95% CI]", "verdict"]


def other_metrics_markdown(summary: Mapping, metrics=("top5", "train_loss", "test_loss")) -> str:
    """The second table: every other metric (top-5, final training loss, test loss) with its paired difference."""
    names = {"top5": "top-5 %", "train_loss": "train loss", "test_loss": "test loss"}
    rows = []
    for metric in metrics:
        digits = 2 if metric.startswith("top") else 3
        for r in table_rows(summary, metric):
            rows.append([r["protocol"], _arm(r["protocol"], r["arm"]), names[metric], _mean_sd(r["mean"], r["std"], digits),
                         _diff(r, digits), r["verdict"]])
    return _table(OTHER_HEADER, rows) if rows else ""


def paper_markdown() -> str:
    """The paper's own comparison (one run each, CIFAR-100) as one line per model."""
    cifar = [r for r in PAPER_ROWS if r["table"] == "cifar100"]
    lines = []
    for model in dict.fromkeys(r["model"] for r in cifar):
        plain, dropped = (next(r for r in cifar if r["model"] == model and r["dropit"] is d) for d in (False, True))
        lines.append(f"{model} {plain['top1']:.2f} → {dropped['top1']:.2f} ({dropped['top1'] - plain['top1']:+.2f}, "
                     f"γ {dropped['gamma']})")
    return "The paper, one run per arm at full scale (CIFAR-100 top-1): " + "; ".join(lines) + "."


def claim_markdown(summary: Mapping) -> str:
    """The study's table and, under it, the paper's numbers; a line saying so when the summary holds no runs."""
    rows = claim_rows(summary)
    if not rows:
        return "No finished run in this summary yet (`make claim` runs the study).\n\n" + paper_markdown()
    return _table(HEADER, rows) + "\n\n" + paper_markdown()


MECHANISM_HEADER = ["step", "γ", "noise, plain", "noise, DropIT", "bias ‖E[g_DropIT] − g‖", "bias / ‖g‖",
                    "mse to g, plain", "mse to g, DropIT", "closer to g", "plain × c as close"]


def mechanism_strategies(rows) -> str:
    """The DropIT strategies a mechanism file measured, e.g. ``"mink"`` (files from before ``--strategy`` are min-k)."""
    return ", ".join(sorted({r.get("strategy", "mink") for r in rows}))


def mechanism_markdown(doc: Mapping) -> str:
    """One row per step and γ of a mechanism file (``{"rows": [...]}``). "closer to g": whose minibatch gradient
    is nearer the exact one on average (the lower mean squared distance); "plain × c as close": the factor that
    would bring plain's as near (:func:`~dropit.lab.claim.mechanism.plain_scale_as_close`)."""
    from dropit.lab.claim.mechanism import plain_scale_as_close

    def scale(r: Mapping) -> str:
        c = plain_scale_as_close(r)
        return "none" if c is None else f"{c:.3f}"

    rows = [[f"{r['step']:,}", f"{r['gamma']:.2f}", f"{r['noise_plain']:.4g}", f"{r['noise_dropit']:.4g}",
             f"{r['bias']:.4g}", f"{100 * r['bias_rel']:.1f}%", f"{r['mse_plain']:.4g}", f"{r['mse_dropit']:.4g}",
             "DropIT" if r["mse_dropit"] < r["mse_plain"] else "plain", scale(r)]
            for r in sorted(doc["rows"], key=lambda r: (r["step"], r["gamma"]))]
    return _table(MECHANISM_HEADER, rows)


EQUAL_MEMORY_HEADER = ["step", "strategy", "γ", "bias / ‖g‖", "its standard error", "noise vs plain's",
                       "distance to g vs plain's"]


def equal_memory_markdown(doc: Mapping) -> str:
    """A mechanism file of several strategies (``--strategy a,b --match-memory``): per step and strategy, the
    bias beside the bias a strategy without one would read on the same minibatches (``bias_se``), and the noise
    and mean squared distance to g as multiples of plain's."""
    order = {s: i for i, s in enumerate(dict.fromkeys(r["strategy"] for r in doc["rows"]))}
    rows = [[f"{r['step']:,}", f"`{r['strategy']}`", f"{r['gamma']:g}", f"{100 * r['bias_rel']:.1f}%",
             f"{100 * r['bias_se'] / r['exact_norm']:.1f}%", f"{r['noise_dropit'] / r['noise_plain']:.2f}x",
             f"{r['mse_dropit'] / r['mse_plain']:.2f}x"]
            for r in sorted(doc["rows"], key=lambda r: (r["step"], r["gamma"] > 0.85, order[r["strategy"]]))]
    return _table(EQUAL_MEMORY_HEADER, rows)
