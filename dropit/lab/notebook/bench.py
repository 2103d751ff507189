"""The lab bench's bookkeeping, without a UI: run names, colours, sweeps, the runs table, status lines.

The explore notebook's panel (:mod:`dropit.lab.notebook.widgets`) and its headless path
keep their runs in a :class:`RunBook`::

    book = RunBook()
    for cfg in sweep_configs(base, gammas=[0, 0.5, 0.9], strategies=["mink"]):  # plain reference first
        run = book.add(cfg)            # run.name "#2 resnet_mini · DropIT γ=0.5 mink", run.color
        run.result = train.run(cfg)    # metrics.json's dict
    book.table()                       # rows: top-1, top-5, kept MiB, vs plain, step time, images/s, wall
    table_markdown(book.table())

A run's name comes from its configuration: the model, plain or DropIT with γ
and strategy, then every other ``dropit_*`` field that differs from its
default (so an option added to RunConfig later, such as a quantization level,
names itself), then compile, channels-last and AMP when on.
"""
from __future__ import annotations

import dataclasses
import html
import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from dropit.lab.train.config import CHOICES, ConfigError, RunConfig

MiB = 2**20
# DropIT runs take these in order; plain runs (the reference) the greys
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
PLAIN_COLORS = ("#222222", "#8c8c8c")
_NAMED_DROPIT = {"dropit", "dropit_gamma", "dropit_strategy"}


# ------------------------------------------------------------------ names


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_value(x) for x in v)
    return str(v)


def dropit_options(cfg: RunConfig) -> list[str]:
    """``key=value`` for each ``dropit_*`` field (beyond on/off, γ and strategy) not at its default."""
    out = []
    for f in dataclasses.fields(cfg):
        if not f.name.startswith("dropit_") or f.name in _NAMED_DROPIT:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        value = getattr(cfg, f.name)
        if value != default:
            out.append(f"{f.name.removeprefix('dropit_')}={_value(value)}")
    return out


def run_name(cfg: RunConfig) -> str:
    """``"resnet_mini · DropIT γ=0.9 mink"``, ``"resnet_mini · plain · compiled"``: what the run is."""
    parts = [cfg.model]
    if cfg.dropit:
        parts.append(" ".join([f"DropIT γ={cfg.dropit_gamma:g} {cfg.dropit_strategy}", *dropit_options(cfg)]))
    else:
        parts.append("plain")
    parts += [flag for flag, on in (("compiled", cfg.compile), ("channels-last", cfg.channels_last)) if on]
    if cfg.amp != "none":
        parts.append(cfg.amp)
    return " · ".join(parts)


def run_slug(cfg: RunConfig) -> str:
    """A folder name for the run: ``resnet_mini_cifar100_dropit0.9_mink`` (+ its other options)."""
    name = f"{cfg.model}_{cfg.dataset}"
    if cfg.dropit:
        name += "_" + "_".join([f"dropit{cfg.dropit_gamma:g}", cfg.dropit_strategy, *dropit_options(cfg)])
    name += "".join(f"_{flag}" for flag, on in (("compiled", cfg.compile), ("channelslast", cfg.channels_last)) if on)
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", name)


# ------------------------------------------------------------------ sweeps


def parse_gammas(text: str | Sequence[float]) -> list[float]:
    """``"0, 0.5, 0.9"`` (or a list) -> ``[0.0, 0.5, 0.9]``; a value outside [0, 1) raises ConfigError."""
    items = re.split(r"[\s,;]+", text.strip()) if isinstance(text, str) else list(text)
    out = []
    for item in items:
        if item == "":
            continue
        try:
            g = float(item)
        except (TypeError, ValueError):
            raise ConfigError(f"sweep γ {item!r} is not a number: give dropping rates such as 0, 0.5, 0.9") from None
        if not 0.0 <= g < 1.0:
            raise ConfigError(f"sweep γ {g:g} is outside [0, 1): give dropping rates such as 0, 0.5, 0.9")
        out.append(g)
    return out


def sweep_configs(base: RunConfig, gammas: Sequence[float], strategies: Sequence[str] | None = None) -> list[RunConfig]:
    """The plain model (the reference), then DropIT at each strategy and γ, in that order."""
    gammas = parse_gammas(gammas)
    if not gammas:
        raise ConfigError("a sweep needs at least one γ, e.g. sweep_gammas: [0, 0.5, 0.9]")
    strategies = list(strategies or [base.dropit_strategy])
    bad = [s for s in strategies if s not in CHOICES["dropit_strategy"]]
    if bad or not strategies:
        raise ConfigError(f"sweep strategies {bad or strategies} are not among {', '.join(CHOICES['dropit_strategy'])}")
    plain = dataclasses.replace(base, dropit=False)
    return [plain] + [dataclasses.replace(base, dropit=True, dropit_gamma=g, dropit_strategy=s)
                      for s in strategies for g in gammas]


# ------------------------------------------------------------------ runs


@dataclass
class Run:
    """One run on the bench: its configuration, how it is drawn, and its metrics once finished."""

    number: int
    config: RunConfig
    color: str
    result: dict | None = None  # metrics.json's dict
    error: str | None = None  # the exception, if the run failed

    @property
    def name(self) -> str:
        return f"#{self.number} {run_name(self.config)}"

    @property
    def plain(self) -> bool:
        return not self.config.dropit

    @property
    def status(self) -> str:
        if self.error is not None:
            return "failed"
        if self.result is None:
            return "running"
        return self.result.get("status", "done")

    @property
    def final(self) -> dict:
        return (self.result or {}).get("final") or {}

    @property
    def kept_bytes(self) -> int | None:
        """Bytes the run's training steps kept for backward (last epoch's mean), else the meter's count."""
        f = self.final
        return f.get("step_kept_bytes") if f.get("step_kept_bytes") is not None else f.get("cache_bytes")


@dataclass
class RunBook:
    """The runs of one bench, in the order they started; numbers and colours are never reused."""

    runs: list[Run] = field(default_factory=list)
    _started: int = 0
    _drop_colors: int = 0
    _plain_colors: int = 0

    def add(self, cfg: RunConfig) -> Run:
        self._started += 1
        if cfg.dropit:
            color = PALETTE[self._drop_colors % len(PALETTE)]
            self._drop_colors += 1
        else:
            color = PLAIN_COLORS[self._plain_colors % len(PLAIN_COLORS)]
            self._plain_colors += 1
        run = Run(self._started, cfg, color)
        self.runs.append(run)
        return run

    def clear(self) -> None:
        """Forget the runs (numbers and colours go on, so names stay unique)."""
        self.runs.clear()

    def reference(self, run: Run) -> Run | None:
        """The latest finished plain run of the same model, data and batch, started before ``run`` if any."""
        def same(r: Run) -> bool:
            a, b = r.config, run.config
            return (r.plain and r.kept_bytes is not None
                    and (a.model, a.dataset, a.image_size, a.batch_size) == (b.model, b.dataset, b.image_size, b.batch_size))

        candidates = [r for r in self.runs if same(r)]
        before = [r for r in candidates if r.number <= run.number]
        return (before or candidates or [None])[-1]

    def table(self) -> list[dict]:
        """One row per run that finished (or failed), in run order."""
        rows = []
        for run in self.runs:
            if run.status == "running":
                continue
            f, ref = run.final, self.reference(run)
            kept = run.kept_bytes
            ratio = kept / ref.kept_bytes if kept is not None and ref is not None and ref.kept_bytes else None
            wall = f.get("wall_s")
            rows.append({
                "number": run.number, "name": run.name, "color": run.color, "status": run.status,
                "top1": f.get("top1"), "top5": f.get("top5"),
                "kept_mib": kept / MiB if kept is not None else None, "vs_plain": ratio,
                "step_ms": 1000 * f["step_s_median"] if f.get("step_s_median") is not None else None,
                "images_per_s": f.get("images_per_s"),
                "wall_s": wall + f.get("startup_s", 0.0) if wall is not None else None,
                "steps": f.get("steps"),
                "gamma": run.config.dropit_gamma if run.config.dropit else None,
                "strategy": run.config.dropit_strategy if run.config.dropit else None,
            })
        return rows


# ------------------------------------------------------------------ the table as text

COLUMNS = (("name", "run", "{}"), ("top1", "top-1 %", "{:.2f}"), ("top5", "top-5 %", "{:.2f}"),
           ("kept_mib", "kept MiB/step", "{:.2f}"), ("vs_plain", "vs plain", "{:.3f}"),
           ("step_ms", "step ms", "{:.0f}"), ("images_per_s", "images/s", "{:.0f}"),
           ("wall_s", "wall s", "{:.0f}"), ("status", "status", "{}"))
"""The runs table's columns: key, heading, format. Kept bytes are what each training step's forward
kept for backward (the last epoch's mean), "vs plain" their ratio to the plain run of the same model,
data and batch; the step time is the median over the run's steps (a compiling first step does not
move it); wall is the whole run, start-up included."""


def _cell(row: dict, key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return fmt.format(v)


def table_markdown(rows: Sequence[dict]) -> str:
    head = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "| " + " | ".join("---" if k in ("name", "status") else "---:" for k, _, _ in COLUMNS) + " |"
    body = ["| " + " | ".join(_cell(r, k, f) for k, _, f in COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def table_html(rows: Sequence[dict]) -> str:
    """The runs table as HTML; each run's name beside a swatch of its colour in the figures."""
    if not rows:
        return "<i>Finished runs appear here.</i>"
    style = "padding:2px 8px;white-space:nowrap;text-align:"
    th = "".join(f"<th style='{style}{'left' if k == 'name' else 'right'}'>{t}</th>" for k, t, _ in COLUMNS)
    trs = []
    for r in rows:
        tds = []
        for k, _, f in COLUMNS:
            text = html.escape(_cell(r, k, f))
            if k == "name":
                text = f"<span style='color:{r['color']}'>&#9632;</span> {text}"
            tds.append(f"<td style='{style}{'left' if k == 'name' else 'right'}'>{text}</td>")
        trs.append(f"<tr class='dropit-run'>{''.join(tds)}</tr>")
    return f"<table class='dropit-runs' style='border-collapse:collapse'><tr>{th}</tr>{''.join(trs)}</table>"


# ------------------------------------------------------------------ status lines


def clock(seconds: float | None) -> str:
    """``75.2`` -> ``"1:15"``."""
    if seconds is None or math.isnan(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def remaining_s(step: int, total: int, since_first_step_s: float | None) -> float | None:
    """Seconds left at the pace of the steps after the first (which may include compiling)."""
    if since_first_step_s is None or step < 2:
        return None
    return since_first_step_s / (step - 1) * max(0, total - step)


def progress_line(name: str, step: int, total: int, elapsed_s: float, left_s: float | None,
                  sweep: tuple[int, int] | None = None) -> str:
    """``training #2 resnet_mini · DropIT γ=0.5 mink: step 12/40, 0:08 elapsed, about 0:19 left``."""
    left = "estimating time left" if left_s is None else f"about {clock(left_s)} left"
    where = f" (sweep run {sweep[0]} of {sweep[1]})" if sweep else ""
    return f"training {name}{where}: step {step}/{total}, {clock(elapsed_s)} elapsed, {left}"
