"""The lab bench's bookkeeping, without a UI: run names, colours, sweeps, the runs table, status lines.

The explore notebook's panel (:mod:`dropit.lab.notebook.widgets`) and its headless path
keep their runs in a :class:`RunBook`::

    book = RunBook()
    for cfg in sweep_configs(base, gammas=[0, 0.5, 0.9], strategies=["mink"]):  # plain reference first
        run = book.add(cfg)            # run.name "#2 resnet_mini · DropIT γ=0.5 mink", run.color
        run.result = train.run(cfg)    # metrics.json's dict
    book.table()                       # rows: top-1 ± SE, top-1 − plain, top-5, kept MiB, kept vs plain, ...
    table_markdown(book.table())

Every top-1 carries its error (:mod:`dropit.lab.stats`): the binomial standard error of
the run's test images, or, where the same configuration ran with several seeds, their
spread. "top-1 − plain" compares a run with the plain run of the same recipe and says
"within noise at n test images" where the difference is under two combined errors.

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

from dropit.lab import stats
from dropit.lab.data.datasets import NUM_CLASSES, TRAIN_IMAGES  # the training split's size names the schedule
from dropit.lab.train.config import CHOICES, RUN_CONTROL, ConfigError, RunConfig
from dropit.lab.units import MiB

# DropIT runs take these in order; plain runs (the reference) the greys
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
PLAIN_COLORS = ("#222222", "#8c8c8c")
_NAMED_DROPIT = {"dropit", "dropit_gamma", "dropit_strategy"}
# fields that do not change what a run learns: runs differing only in these (and the seed) are repeats
_RUN_CONTROL = RUN_CONTROL | {"seed"}


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
    if cfg.compile_memory_budget is not None:  # the compiler's activation memory budget
        parts[parts.index("compiled")] = f"compiled (budget {cfg.compile_memory_budget:g})"
    if cfg.amp != "none":
        parts.append(cfg.amp)
    return " · ".join(parts)


def run_slug(cfg: RunConfig) -> str:
    """A folder name for the run: ``resnet_mini_cifar100_dropit0.9_mink`` (+ its other options)."""
    name = f"{cfg.model}_{cfg.dataset}"
    if cfg.dropit:
        name += "_" + "_".join([f"dropit{cfg.dropit_gamma:g}", cfg.dropit_strategy, *dropit_options(cfg)])
    name += "".join(f"_{flag}" for flag, on in (("compiled", cfg.compile), ("channelslast", cfg.channels_last)) if on)
    if cfg.compile_memory_budget is not None:
        name += f"_budget{cfg.compile_memory_budget:g}"
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", name)


# ------------------------------------------------------------------ sweeps


def parse_gammas(text: str | Sequence[float]) -> list[float]:
    """``"0, 0.5, 0.9"`` (or a list) -> ``[0.0, 0.5, 0.9]``; an empty list, a repeated γ or a value outside
    [0, 1) raises ConfigError (said in the bench's status line before any run starts)."""
    items = re.split(r"[\s,;]+", text.strip()) if isinstance(text, str) else list(text)
    out = []
    for item in items:
        if item == "":
            continue
        try:
            g = float(item)
        except (TypeError, ValueError):
            raise ConfigError(f"sweep γ {item!r} is not a number: give dropping rates such as 0.5, 0.9") from None
        if not 0.0 <= g < 1.0:
            raise ConfigError(f"sweep γ {g:g} is outside [0, 1): give dropping rates such as 0.5, 0.9")
        if g in out:
            raise ConfigError(f"sweep γ {g:g} is listed twice: a repeat would rerun the same seed, not add one "
                              "(use the seeds field for more seeds)")
        out.append(g)
    if not out:
        raise ConfigError("a sweep needs at least one γ, e.g. 0.5, 0.9")
    return out


def sweep_configs(base: RunConfig, gammas: Sequence[float], strategies: Sequence[str] | None = None,
                  *, seeds: int = 1) -> list[RunConfig]:
    """The plain model (the reference), then DropIT at each strategy and γ, in that order;
    with ``seeds`` > 1, each of them that many times (seeds ``base.seed``, ``base.seed + 1``, ...).

    γ 0 drops nothing: DropIT at γ 0 trains the plain model again, so it is not run; the plain run,
    which every sweep starts with, is its control (the summary draws it at γ 0)."""
    gammas = parse_gammas(gammas)
    strategies = list(strategies or [base.dropit_strategy])
    bad = [s for s in strategies if s not in CHOICES["dropit_strategy"]]
    if bad or not strategies:
        raise ConfigError(f"sweep strategies {bad or strategies} are not among {', '.join(CHOICES['dropit_strategy'])}")
    dropping = [g for g in gammas if g > 0.0]
    if not dropping:
        raise ConfigError("a sweep needs a γ above 0: γ 0 is the plain model, which every sweep runs first")
    plain = dataclasses.replace(base, dropit=False)
    plan = [plain] + [dataclasses.replace(base, dropit=True, dropit_gamma=g, dropit_strategy=s)
                      for s in strategies for g in dropping]
    return [c for cfg in plan for c in with_seeds(cfg, seeds)]


def steps_per_epoch(cfg: RunConfig) -> int | None:
    """Training steps per epoch (the loader drops the last partial batch); None for an unknown dataset."""
    images = cfg.subset or TRAIN_IMAGES.get(cfg.dataset)
    return images // cfg.batch_size if images else None


def planned_steps(cfg: RunConfig) -> int | None:
    """The step a run's schedule ends at: epochs × steps per epoch, or max_steps if fewer."""
    spe = steps_per_epoch(cfg)
    total = cfg.epochs * spe if spe else None
    if cfg.max_steps:
        return min(total, cfg.max_steps) if total else cfg.max_steps
    return total


def schedule_words(cfg: RunConfig) -> str:
    """What a run of ``cfg`` trains: ``"150 steps: 3 epochs × 50 (5000 images / batch 100), seed 42"``."""
    spe, total = steps_per_epoch(cfg), planned_steps(cfg)
    images = cfg.subset or TRAIN_IMAGES.get(cfg.dataset)
    if spe is None:
        return f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}" + (f", at most {cfg.max_steps} steps" if cfg.max_steps else "") + f", seed {cfg.seed}"
    text = f"{total} steps: {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''} × {spe} ({images} images / batch {cfg.batch_size})"
    if cfg.max_steps and cfg.max_steps < cfg.epochs * spe:
        text += f", cut at max steps {cfg.max_steps}"
    return text + f"; test on {cfg.val_subset or 'all'} test images; seed {cfg.seed}"


def with_seeds(cfg: RunConfig, seeds: int = 1) -> list[RunConfig]:
    """``cfg`` repeated with seeds ``cfg.seed``, ``cfg.seed + 1``, ... (``seeds`` runs)."""
    if int(seeds) < 1:
        raise ConfigError(f"seeds must be at least 1, got {seeds}")
    return [dataclasses.replace(cfg, seed=cfg.seed + i) for i in range(int(seeds))]


def recipe(cfg: RunConfig, *, dropit: bool = True) -> tuple:
    """What a run learns from: every field but run control and the seed (and the DropIT fields unless ``dropit``)."""
    return tuple((f.name, repr(getattr(cfg, f.name))) for f in dataclasses.fields(cfg)
                 if f.name not in _RUN_CONTROL and (dropit or not f.name.startswith("dropit")))


# ------------------------------------------------------------------ runs


@dataclass
class Run:
    """One run on the bench: its configuration, how it is drawn, and its metrics once finished."""

    number: int
    config: RunConfig
    color: str
    result: dict | None = None  # metrics.json's dict
    error: str | None = None  # the exception, if the run failed
    total_steps: int | None = None  # the steps its schedule ends at (set by the bench when training starts)

    def __post_init__(self) -> None:
        if self.total_steps is None:
            self.total_steps = planned_steps(self.config)

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
    def complete(self) -> bool:
        """Whether the run finished its schedule with a top-1 (a stopped or failed run did not): a seed to pool."""
        return self.status == "done" and self.top1 is not None and bool(self.test_images)

    @property
    def final(self) -> dict:
        return (self.result or {}).get("final") or {}

    @property
    def test_images(self) -> int | None:
        """How many test images its top-1 was measured on (the run's own count, else its val_subset)."""
        return self.final.get("val_images") or self.config.val_subset

    @property
    def top1(self) -> float | None:
        return self.final.get("top1")

    @property
    def kept_bytes(self) -> int | None:
        """Bytes the run's training steps kept for backward (last epoch's mean), else the meter's count."""
        f = self.final
        return f.get("step_kept_bytes") if f.get("step_kept_bytes") is not None else f.get("cache_bytes")


@dataclass
class RunBook:
    """The runs of one bench, in the order they started; :meth:`clear` starts the numbering again."""

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
        """Forget the runs: the next one is #1 again (run folders are numbered on disk, so none is overwritten)."""
        self.runs.clear()
        self._started = self._drop_colors = self._plain_colors = 0

    def _finished(self) -> list[Run]:
        return [r for r in self.runs if r.status not in ("running", "failed")]

    def reference(self, run: Run) -> Run | None:
        """The latest finished plain run of the same model, data and batch, started before ``run`` if any."""
        def same(r: Run) -> bool:
            a, b = r.config, run.config
            return (r.plain and r.kept_bytes is not None
                    and (a.model, a.dataset, a.image_size, a.batch_size) == (b.model, b.dataset, b.image_size, b.batch_size))

        candidates = [r for r in self._finished() if same(r)]
        before = [r for r in candidates if r.number <= run.number]
        return (before or candidates or [None])[-1]

    def seed_runs(self, run: Run) -> dict[int, Run]:
        """The runs of ``run``'s recipe that finished their schedule, one per distinct seed (the first of each seed;
        a later run of the same seed is a rerun, a stopped run is no seed): what a mean over seeds may pool."""
        key, out = recipe(run.config), {}
        for r in self._finished():
            if r.complete and recipe(r.config) == key:
                out.setdefault(r.config.seed, r)
        return out

    def repeats(self, run: Run) -> list[Run]:
        """The seeds of ``run``'s configuration: :meth:`seed_runs`' runs, in run order."""
        return sorted(self.seed_runs(run).values(), key=lambda r: r.number)

    def rerun_of(self, run: Run) -> Run | None:
        """The earlier finished run of the same recipe and seed that ``run`` repeats, if any."""
        first = self.seed_runs(run).get(run.config.seed)
        return first if first is not None and first.number < run.number and run.complete else None

    def top1_estimate(self, run: Run) -> stats.Estimate | None:
        """``run``'s top-1 over its distinct seeds: the mean, ± their spread (one seed: ± its binomial SE)."""
        reps = self.repeats(run)
        if not reps:
            return None
        return stats.estimate([r.top1 for r in reps], n_images=min(r.test_images for r in reps))

    def plain_runs(self, run: Run) -> dict[int, Run]:
        """The plain runs of ``run``'s recipe (same training, DropIT off) that finished their schedule, one per seed."""
        key = recipe(run.config, dropit=False)
        plain = [r for r in self._finished() if r.plain and r.complete and recipe(r.config, dropit=False) == key]
        return self.seed_runs(plain[-1]) if plain else {}

    def plain_estimate(self, run: Run) -> stats.Estimate | None:
        """The top-1 of the plain runs of ``run``'s recipe, over their distinct seeds."""
        plain = self.plain_runs(run)
        return self.top1_estimate(next(iter(plain.values()))) if plain else None

    def difference(self, run: Run) -> stats.SeedDifference | None:
        """``run``'s recipe − plain's over their distinct, finished seeds (:func:`dropit.lab.stats.seed_difference`):
        paired by seed where they share two or more; None for a plain run, a stopped one or without a plain run."""
        if run.plain or not run.complete:
            return None
        mine, plain = self.seed_runs(run), self.plain_runs(run)
        if not mine or not plain:
            return None
        n = min(r.test_images for r in [*mine.values(), *plain.values()])
        return stats.seed_difference({s: r.top1 for s, r in mine.items()}, {s: r.top1 for s, r in plain.items()}, n_images=n)

    def table(self) -> list[dict]:
        """One row per run that finished (or failed), in run order."""
        return [self.row(run) for run in self.runs if run.status != "running"]

    def row(self, run: Run) -> dict:
        """``run``'s row of the runs table: its own top-1 ± SE and bytes, and its recipe's difference to plain."""
        f, ref = run.final, self.reference(run)
        kept = run.kept_bytes
        ratio = kept / ref.kept_bytes if kept is not None and ref is not None and ref.kept_bytes else None
        wall = f.get("wall_s")
        rerun = self.rerun_of(run)
        row = {
            "number": run.number, "name": run.name, "color": run.color, "status": run.status,
            "top1": run.top1, "top5": f.get("top5"), "test_images": run.test_images,
            "top1_se": stats.top1_stderr(run.top1, run.test_images) if run.top1 is not None and run.test_images else None,
            "kept_mib": kept / MiB if kept is not None else None, "kept_vs_plain": ratio,
            "step_ms": 1000 * f["step_s_median"] if f.get("step_s_median") is not None else None,
            "images_per_s": f.get("images_per_s"),
            "wall_s": wall + f.get("startup_s", 0.0) if wall is not None else None,
            "steps": f.get("steps"), "total_steps": run.total_steps, "seed": run.config.seed,
            "gamma": run.config.dropit_gamma if run.config.dropit else None,
            "strategy": run.config.dropit_strategy if run.config.dropit else None,
            "complete": run.complete, "rerun_of": rerun.number if rerun else None,
            "rerun_differs": rerun is not None and (rerun.top1 != run.top1),
            "rerun_top1": rerun.top1 if rerun else None,
            "seeds": 0, "seed_list": [], "top1_vs_plain": None, "top1_vs_plain_err": None, "within_noise": None,
            "plain_seeds": 0, "test": None,
        }
        if run.complete:
            reps = self.seed_runs(run)
            row["seeds"], row["seed_list"] = len(reps), sorted(reps)
        est = self.top1_estimate(run) if run.complete else None  # the recipe's mean over its distinct seeds
        row.update(mean_top1=est.value if est else None, mean_top1_err=est.error if est else None,
                   mean_seeds=est.seeds if est else 0, mean_images=est.n_images if est else None)
        diff = self.difference(run)
        if diff is not None:
            row.update(top1_vs_plain=diff.value, top1_vs_plain_err=diff.error, within_noise=diff.within_noise,
                       noise_words=f"within noise at {diff.n_images} test images", test=diff.test,
                       ci95=(diff.low, diff.high), plain_seeds=len(self.plain_runs(run)), paired=diff.paired)
        return row


# ------------------------------------------------------------------ the table as text

def _pm(value: float | None, error: float | None, fmt: str = "{:.2f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value) + ("" if error is None else f" ± {error:.2f}")


def top1_cell(row: dict) -> str:
    """``"2.30 ± 0.47"``: the run's own top-1 and its binomial standard error (points)."""
    return _pm(row.get("top1"), row.get("top1_se"))


def seeds_cell(row: dict) -> str:
    """What the run adds to its recipe's mean: ``"1 (seed 0)"``, ``"3 (seeds 0, 1, 2)"``, ``"rerun of #1 (seed 0)"``
    (``", differs: 8.20 there"`` when its top-1 does not match), ``"stopped at step 51/150: not pooled"``."""
    if row.get("status") == "failed":
        return "failed"
    if row.get("rerun_of") is not None:
        text = f"rerun of #{row['rerun_of']} (seed {row['seed']}): not pooled"
        return text + (f", differs: {row['rerun_top1']:.2f} there" if row.get("rerun_differs") else ", same top-1")
    if not row.get("complete"):
        total = row.get("total_steps")
        return f"{row.get('status', 'stopped')} at step {row.get('steps')}" + (f"/{total}" if total else "") + ": not pooled"
    seeds = row.get("seed_list") or []
    return f"{len(seeds)} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"


def vs_plain_cell(row: dict) -> str:
    """``"-1.15 ± 0.89 (one seed each, binomial SEs), within noise at 2000 test images"``: the recipe's mean over its
    distinct finished seeds minus plain's (:func:`dropit.lab.stats.seed_difference`, which names its test);
    a rerun points to the run it repeats, a stopped run gets no verdict."""
    if row.get("rerun_of") is not None and row.get("top1_vs_plain") is not None:
        return f"as #{row['rerun_of']} (a rerun is not a seed)"
    if row.get("top1_vs_plain") is None:
        return "– (stopped: no verdict)" if row.get("status") == "stopped" else "–"
    text = _pm(row["top1_vs_plain"], row.get("top1_vs_plain_err"), "{:+.2f}") + f" ({row['test']})"
    return f"{text}, {row['noise_words']}" if row.get("within_noise") else text


COLUMNS = (("name", "run", "{}"), ("top1", "top-1 % ± SE", top1_cell), ("seeds", "seeds in the mean", seeds_cell),
           ("top1_vs_plain", "top-1 − plain", vs_plain_cell),
           ("top5", "top-5 %", "{:.2f}"), ("kept_mib", "kept MiB/step", "{:.2f}"), ("kept_vs_plain", "kept vs plain", "{:.3f}"),
           ("step_ms", "step ms", "{:.0f}"), ("images_per_s", "images/s", "{:.0f}"),
           ("wall_s", "wall s", "{:.0f}"), ("status", "status", "{}"))
"""The runs table's columns: key, heading, format (or a function of the row). The top-1 is the run's own,
on its test images, ± its binomial standard error. "seeds in the mean" says what the run adds to its
recipe's mean: only runs of distinct seeds that finished their schedule are pooled; a rerun of a seed
and a stopped run are shown, never pooled. "top-1 − plain" is that mean minus plain's of the same recipe
(:func:`dropit.lab.stats.seed_difference`): paired by seed where they share two or more seeds (Student-t
95%), else ± the combined error; "within noise at n test images" when the interval holds 0. Kept bytes are
what each training step's forward kept for backward (the last epoch's mean), "kept vs plain" their ratio
to the plain run of the same model, data and batch; the step time is the median over the run's steps (a
compiling first step does not move it); wall is the whole run, start-up included."""
NOISE_NOTE = ("top-1 ± its binomial standard error on the run's test images; the mean over a recipe pools only "
              "distinct seeds that finished their schedule (reruns and stopped runs are shown, not pooled); "
              "− plain is paired by seed where two or more seeds are shared, and marked within noise when its "
              "95% interval holds 0")


def _cell(row: dict, key: str, fmt) -> str:
    if callable(fmt):
        return fmt(row)
    v = row.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return fmt.format(v)


def table_markdown(rows: Sequence[dict]) -> str:
    head = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "| " + " | ".join("---" if k in ("name", "status") else "---:" for k, _, _ in COLUMNS) + " |"
    body = ["| " + " | ".join(_cell(r, k, f) for k, _, f in COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body, "", NOISE_NOTE + "."])


def table_html(rows: Sequence[dict]) -> str:
    """The runs table as HTML; each run's name beside a swatch of its colour in the figures."""
    if not rows:
        return "<i>Finished runs appear here.</i>"
    style = "padding:2px 8px;text-align:"
    th = "".join(f"<th style='{style}{'left' if k == 'name' else 'right'};white-space:nowrap'>{html.escape(t)}</th>"
                 for k, t, _ in COLUMNS)
    trs = []
    for r in rows:
        tds = []
        for k, _, f in COLUMNS:
            text = html.escape(_cell(r, k, f))
            if k == "name":
                text = f"<span style='color:{r['color']}'>&#9632;</span> {text}"
            wrap = "normal;min-width:14em;max-width:24em" if k == "top1_vs_plain" else "nowrap"
            noise = " class='dropit-noise'" if k == "top1_vs_plain" and r.get("within_noise") else ""
            tds.append(f"<td{noise} style='{style}{'left' if k == 'name' else 'right'};white-space:{wrap}'>{text}</td>")
        trs.append(f"<tr class='dropit-run'>{''.join(tds)}</tr>")
    note = f"<div style='font-size:smaller;color:#555'>{html.escape(NOISE_NOTE)}.</div>"
    return f"<table class='dropit-runs' style='border-collapse:collapse'><tr>{th}</tr>{''.join(trs)}</table>{note}"


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


def finished_line(book: RunBook, run: Run, *, kept_counted: bool = True) -> str:
    """``done: #2 resnet_mini · DropIT γ=0.9 mink: top-1 2.10 ± 0.45% on 1000 test images, −0.20 ± 0.66 points
    vs plain (one seed each, binomial SEs), within noise at 1000 test images, kept ...``; a stopped run gets its
    step count and no verdict, a rerun says whose seed it repeats; a run too short to compare says so."""
    row = book.row(run)
    parts = [f"top-1 {top1_cell(row)}% on {row['test_images']} test images" if row["top1"] is not None else "top-1 n/a"]
    if row["rerun_of"] is not None or not row["complete"]:
        parts.append(seeds_cell(row) + ("; no verdict" if not row["complete"] else ""))
    elif row["top1_vs_plain"] is not None:
        text = _pm(row["top1_vs_plain"], row["top1_vs_plain_err"], "{:+.2f}") + f" points vs plain ({row['test']})"
        parts.append(f"{text}, {row['noise_words']}" if row["within_noise"] else text)
    if row["kept_mib"] is not None:
        ratio = f" ({row['kept_vs_plain']:.2f} of plain)" if row["kept_vs_plain"] is not None and not run.plain else ""
        parts.append(f"kept {row['kept_mib']:.2f} MiB per step{ratio}")
    if not kept_counted:
        parts.append("kept bytes per step not counted (the meter's count shown)")
    parts.append(f"{row['steps']} steps in {clock(row['wall_s'])}")
    short = too_short_words(run) if row["complete"] else None
    return f"{run.status}: {run.name}: " + ", ".join(parts) + (f". {short[0].upper()}{short[1:]}" if short else "")


def sweep_line(book: RunBook, done: Sequence[Run], total: int, seconds: float, *, gamma0: bool = False) -> str:
    """``done: sweep of 3 of 3 runs in 1:10; 2 of 2 DropIT runs within noise of plain at 1000 test images; ...``;
    ``gamma0``: the list held γ 0, which the plain run stands for."""
    stopped = bool(done) and done[-1].status == "stopped"
    how = "stopped" if stopped or len(done) < total else "done"
    skipped = f", {total - len(done)} skipped" if len(done) < total else ""
    line = f"{how}: sweep of {len(done)} of {total} runs in {clock(seconds)}{skipped}"
    if gamma0:
        line += "; γ 0 is the plain run (not trained twice)"
    rows = [book.row(r) for r in done if not r.plain]
    judged = [r for r in rows if r["within_noise"] is not None and r["rerun_of"] is None]
    if judged:
        quiet = [r for r in judged if r["within_noise"]]
        n = min(r["test_images"] for r in judged)
        line += f"; {len(quiet)} of {len(judged)} DropIT runs' top-1 within noise of plain at {n} test images"
    short = next((w for r in done if r.complete and (w := too_short_words(r))), None)
    line += f"; {short}" if short else ""
    return line + "; the table and the summary are below"


def error_html(exc: BaseException, details: str) -> str:
    """A failed run for the status line: one escaped sentence, the traceback folded away below it."""
    first = (str(exc).strip().splitlines() or [""])[0]
    sentence = f"failed: {type(exc).__name__}" + (f": {first}" if first else "")
    return (f"<span class='dropit-error'>{html.escape(sentence)}</span>"
            f"<details><summary>details</summary><pre>{html.escape(details)}</pre></details>")


CLASSES = NUM_CLASSES


def too_short_words(run: Run) -> str | None:
    """Said on screen when a run is too short to compare: its top-1 cannot be told from a broken run's.

    A broken companion (wrong gradients) still learns something; the rule stands one in for a run
    that gains half as much over chance (1 / classes). When the run's top-1 is within noise of that,
    no comparison of plain, DropIT or a broken companion can be read from runs of this length.
    """
    classes = CLASSES.get(run.config.dataset)
    if run.top1 is None or not run.test_images or classes is None:
        return None
    n, chance = run.test_images, 100.0 / classes
    half = chance + max(run.top1 - chance, 0.0) / 2
    if not stats.within_noise(stats.estimate([run.top1], n_images=n), stats.estimate([half], n_images=n)):
        return None
    return (f"too short to compare: at {n} test images, top-1 {run.top1:.2f} is within noise of a run that learns half "
            f"as much (chance is {chance:g}%), so plain, DropIT and a broken companion cannot be told apart; "
            "train longer (the explore notebook's default, params/explore.yaml, can)")
