"""A memory target, planned: measure the candidate configurations on your model and pick the fastest that fits.

    import dropit
    loss_fn = lambda out: F.cross_entropy(out, labels)
    p = dropit.plan(model, images, loss_fn, target=0.3)   # save at most 0.3 of what the plain model saves
    print(p.table())                                      # every candidate: kept, peak, step time, gradient error
    model = p.apply(model)                                # the pick, applied in place (compiled if it compiles)

Candidates (:class:`dropit.candidate.Candidate`) are DropIT with each of
``strategies`` at each of ``gammas``, with each ``quantize`` level,
combined with checkpointed blocks (none, every other, every block of the
model's most repeated block class), and with ``compile=True`` every one is
compiled at each of the compiler's memory ``budgets`` (see
:mod:`dropit.budget`). Nothing is estimated: each candidate is built on a copy
of the model and measured on the example batch:

- ``saved_bytes``: what one training forward saves for backward, each storage
  once, parameters and buffers left out (the meter's count, taken with a pack
  hook alone, so a compiled graph is not recompiled to measure it; not the
  growth of resident memory, which the frontier measures);
- ``peak_bytes`` (CUDA only): the allocator's peak over one step above what was
  allocated before it;
- ``timing`` (:class:`dropit.timing.Timing`; ``step_s``, ``noise_s``,
  ``time_ratio``): the median over ``rounds`` interleaved rounds (one step of
  each candidate in turn, so drifts in machine speed hit all alike) of forward,
  loss and backward, half the spread between its quartiles, and the median of
  its per-round ratio to plain's step;
- ``grad_error``: the relative L2 error of all parameter gradients against the
  plain model's, on the same batch (0 for exact configurations).

- ``grad_bias``: the relative L2 error of the mean gradient over ``draws``
  steps on the same batch (:func:`dropit.seed_draws` keys each): the error that
  does not average out. It equals ``grad_error`` for deterministic strategies,
  and falls toward 0 as the draws grow for ``"unbiased"``;
- ``study_top1``: what the kit's accuracy study measured for exactly this
  strategy, gamma and quantize level (:mod:`dropit.evidence`; empty elsewhere).

The pick (``objective="fastest"``, the default) is the candidate with the
smallest median step among those within the target; ``objective="faithful"``
picks the smallest ``grad_bias`` (then ``grad_error``) among those within the
target and, with ``max_time_ratio``, within that step time against plain's.
The compiler's budget is not monotonic in memory, hence measuring every
candidate rather than bisecting. A target below every candidate raises
ValueError naming the smallest figure reached; so does a time budget no
candidate within the target meets.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import torch
import torch.nn as nn

from .budget import check_budget
from .candidate import Candidate
from .draws import seed_draws
from .evidence import StudyCost, describe, study_top1_cost
from .quant import check_quantize
from .saved import SavedBytes
from .strategies import DEFAULT_STRATEGY, check_gamma, get_strategy
from .timing import Timing, time_against
from .meter import MiB

METRICS = ("saved", "peak")
OBJECTIVES = ("fastest", "faithful")
_OLD_NAMES = {"kept_bytes": "saved_bytes", "kept_ratio": "saved_ratio", "kept": "saved"}  # before "saved" was the name

__all__ = ["Candidate", "Plan", "Row", "candidates_for", "choose", "plan", "repeated_blocks", "saved_bytes"]


@dataclass(frozen=True)
class Row:
    """One candidate measured: saved bytes (the meter's count), the CUDA peak, the gradient error, its timing."""

    name: str
    gamma: float | None
    quantize: str | None
    strategy: str
    blocks: int  # checkpointed blocks
    compiled: bool
    budget: float | None
    saved_bytes: int  # kept for backward by one training forward, each storage once (not the resident growth)
    peak_bytes: int | None  # CUDA: the allocator's peak over one step above what was allocated before it
    grad_error: float  # relative L2 error of all parameter gradients against the plain model's
    saved_ratio: float = 1.0  # saved_bytes over plain's
    timing: Timing | None = None  # None: over the target, not timed
    grad_bias: float | None = None  # relative error of the mean gradient over the draws (None: not measured)
    study_top1: tuple[StudyCost, ...] = ()  # the accuracy study's top-1 cost of this setting, where measured

    @property
    def step_s(self) -> float | None:
        return self.timing.step_s if self.timing else None

    @property
    def noise_s(self) -> float | None:
        return self.timing.noise_s if self.timing else None

    @property
    def time_ratio(self) -> float | None:
        return self.timing.ratio if self.timing else None

    def bytes_of(self, metric: str) -> int | None:
        return self.saved_bytes if metric == "saved" else self.peak_bytes

    def __getitem__(self, key: str):
        """Read access by name (``row["time_ratio"]``), for readers of the planner's table as a mapping."""
        return getattr(self, _OLD_NAMES.get(key, key))

    def as_dict(self) -> dict:
        """The row as JSON-ready fields, the timing's flattened (``step_s``, ``noise_s``, ``time_ratio``, ...)."""
        out = {k: v for k, v in asdict(self).items() if k != "timing"}
        t = self.timing
        return {**out, "step_s": self.step_s, "noise_s": self.noise_s, "time_ratio": self.time_ratio,
                "time_q1": t.ratio_q1 if t else None, "time_q3": t.ratio_q3 if t else None}


@dataclass
class Plan:
    """The measured table, the target and the pick; ``apply(model)`` applies the pick."""

    rows: list[Row]  # one per candidate, plain first; see the module docstring for the columns
    candidates: list[Candidate]
    target_bytes: int
    metric: str  # "saved" | "peak"
    objective: str = "fastest"  # "fastest" | "faithful"
    max_time_ratio: float | None = None  # "faithful": the step-time budget against plain's
    pick: Candidate = field(init=False)

    def __post_init__(self):
        self.pick = self.candidates[self._choose(self.target_bytes)]

    def _choose(self, target_bytes: int) -> int:
        return choose(self.rows, target_bytes, self.metric, objective=self.objective,
                      max_time_ratio=self.max_time_ratio)

    @property
    def plain_bytes(self) -> int:
        return self.rows[0].bytes_of(self.metric)

    def pick_for(self, fraction: float) -> Candidate:
        """The pick for another target, a fraction of plain's (from this table; a timed table is needed)."""
        return self.candidates[self._choose(int(fraction * self.plain_bytes))]

    def apply(self, model: nn.Module) -> nn.Module:
        """The pick applied to ``model`` in place; returns the module to train (compiled if the pick compiles)."""
        return self.pick.build(model)

    def table(self) -> str:
        within = f" within {self.max_time_ratio:g}x plain's step" if self.max_time_ratio else ""
        lines = [f"target: {self.metric} <= {self.target_bytes / MiB:.1f} MiB; pick ({self.objective}{within}): "
                 f"{self.pick.name}",
                 f"{'candidate':<58}{'saved MiB':>10}{'ratio':>7}{'peak MiB':>9}{'step ms':>9}{'±':>8}"
                 f"{'vs plain':>9}{'grad err':>9}{'bias':>9}  study top-1 vs plain"]
        for r in self.rows:
            peak = f"{r.peak_bytes / MiB:9.1f}" if r.peak_bytes is not None else f"{'-':>9}"
            timed = (f"{r.step_s * 1e3:9.1f}{r.noise_s * 1e3:8.1f}{r.time_ratio:8.3f}x"
                     if r.timing is not None else f"  {'(over target: not timed)':<22}")
            mark = " <- pick" if r.name == self.pick.name else ""
            bias = f"{r.grad_bias:9.1e}" if r.grad_bias is not None else f"{'-':>9}"
            lines.append(f"{r.name:<58}{r.saved_bytes / MiB:10.1f}{r.saved_ratio:7.3f}{peak}{timed}"
                         f"{r.grad_error:9.1e}{bias}  {describe(r.study_top1)}{mark}")
        return "\n".join(lines)


def choose(rows: list[Row], target_bytes: int, metric: str = "saved", *, objective: str = "fastest",
           max_time_ratio: float | None = None) -> int:
    """Index of the pick among the timed rows whose ``metric`` bytes are within the target: the fastest, or
    (``objective="faithful"``) the smallest gradient bias, then error, within ``max_time_ratio`` of plain's step.
    ValueError if none is."""
    metric = _OLD_NAMES.get(metric, metric)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    fits = [i for i, r in enumerate(rows) if r.bytes_of(metric) <= target_bytes and r.timing is not None]
    if not fits:
        plain = rows[0].bytes_of(metric)
        low = min(rows, key=lambda r: r.bytes_of(metric))
        raise ValueError(
            f"no candidate keeps {metric} bytes within the target of {target_bytes / MiB:.2f} MiB "
            f"({target_bytes / plain:.3f} of plain's); the smallest reached is "
            f"{low.bytes_of(metric) / MiB:.2f} MiB ({low.bytes_of(metric) / plain:.3f} "
            f"of plain's) by {low.name}: raise the target, or add candidates (higher gammas, int4, "
            "more checkpointed blocks, compile=True with a lower budget)")
    if objective == "fastest":
        return min(fits, key=lambda i: rows[i].step_s)
    fast = [i for i in fits if max_time_ratio is None or rows[i].time_ratio <= max_time_ratio]
    if not fast:
        best = min(fits, key=lambda i: rows[i].time_ratio)
        raise ValueError(f"no candidate within the target runs within {max_time_ratio:g}x plain's step; the fastest "
                         f"is {rows[best].name} at {rows[best].time_ratio:.3f}x: raise max_time_ratio or the target")
    return min(fast, key=lambda i: (_bias(rows[i]), rows[i].grad_error, rows[i].step_s))


def _bias(row: Row) -> float:
    return row.grad_bias if row.grad_bias is not None else row.grad_error


def repeated_blocks(model: nn.Module) -> list[str]:
    """Names of the instances of the model's most repeated block class (a module with parameters and two or more
    children that is not a container): a ResNet's BasicBlocks, a ViT's encoder blocks."""
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    by_class: dict[type, list[str]] = {}
    for name, m in model.named_modules():
        if name and not isinstance(m, containers) and len(list(m.children())) >= 2 and any(True for _ in m.parameters()):
            by_class.setdefault(type(m), []).append(name)
    if not by_class:
        return []
    names = max(by_class.values(), key=len)
    return names if len(names) >= 2 else []


def _block_choices(model: nn.Module, blocks) -> list[tuple[tuple[str, ...], str]]:
    if blocks is not None:
        return [(tuple(names), f"{len(names)} blocks") if names else ((), "") for names in blocks]
    found = repeated_blocks(model)
    if not found:
        return [((), "")]
    return [((), ""), (tuple(found[::2]), f"every other block ({len(found[::2])})"), (tuple(found), f"every block ({len(found)})")]


def candidates_for(model: nn.Module, *, gammas=(0.5, 0.9), quantize=(None, "int8", "int4"), blocks=None,
                   compile: bool = False, budgets=(None, 0.5, 0.2, 0.0),
                   strategies: Sequence[str] = (DEFAULT_STRATEGY,)) -> list[Candidate]:
    """Every combination of strategy, gamma, quantize level, checkpointed blocks and budget; plain (uncheckpointed,
    at the first budget) first. A strategy added to :data:`dropit.STRATEGIES` is weighed by naming it here."""
    gammas = [check_gamma(g, "gammas") for g in gammas]
    levels = [check_quantize(q) for q in quantize]
    budgets = [check_budget(b, "budgets") for b in budgets] if compile else [None]
    strategies = [get_strategy(s).name for s in dict.fromkeys(strategies)]
    drops = [(None, None, DEFAULT_STRATEGY)] + [(g, q, s) for s in strategies for g in gammas for q in levels]
    reference = Candidate(compiled=compile)  # what "of plain's" means
    every = [Candidate(g, q, names, label, compile, b, s)
             for names, label in _block_choices(model, blocks) for b in budgets for g, q, s in drops]
    return [reference] + [c for c in every if c != reference]


def plan(model: nn.Module, inputs, loss_fn: Callable[[object], torch.Tensor], *, target: float | None = None,
         target_bytes: int | None = None, metric: str = "saved", gammas: Sequence[float] = (0.5, 0.9),
         quantize: Sequence[str | None] = (None, "int8", "int4"), blocks: Sequence[Sequence[str]] | None = None,
         compile: bool = False, budgets: Sequence[float | None] = (None, 0.5, 0.2, 0.0),
         strategy: str = DEFAULT_STRATEGY, strategies: Sequence[str] | None = None, rounds: int = 5,
         time_all: bool = False, seed: int = 0, objective: str = "fastest", max_time_ratio: float | None = None,
         draws: int = 4, log: Callable[[str], None] | None = None) -> Plan:
    """Measure the candidates on ``model`` (left untouched) and pick the fastest (or most faithful) within the target.

    Args:
        inputs: the example batch: a tensor, or a tuple of the model's positional inputs.
        loss_fn: ``loss_fn(output) -> scalar tensor`` (close over the labels).
        target: a fraction of the plain model's bytes (``metric``); or ``target_bytes``: bytes. Exactly one.
        metric: ``"saved"`` (bytes saved for backward by one forward, the meter's count) or ``"peak"`` (the
            step's allocator peak; CUDA only).
        gammas, quantize, blocks, compile, budgets: the candidates (see :func:`candidates_for`);
            ``blocks`` is a list of lists of block names to checkpoint (default: none, every other
            and every block of the most repeated block class).
        strategy, strategies: the DropIT strategy, or several to weigh against each other (``strategies``
            wins where both are given).
        rounds: timed rounds (one step of each candidate each round, after a warm-up round).
        time_all: time every candidate, not only those within the target (for :meth:`Plan.pick_for`).
        seed: the RNG seed before each gradient step (dropout and random strategies alike).
        objective: ``"fastest"`` (the default) or ``"faithful"``: the smallest gradient bias within the target and
            ``max_time_ratio`` (the step time against plain's; None: any).
        draws: gradient steps on the batch whose mean gives ``grad_bias`` for strategies that draw
            (``"unbiased"``); deterministic ones need one.
        log: called with a line per candidate measured.
    """
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    metric = _OLD_NAMES.get(metric, metric)
    cuda = _check_options(inputs, metric, target, target_bytes, rounds)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if max_time_ratio is not None and not max_time_ratio > 0:
        raise ValueError(f"max_time_ratio must be a positive step-time ratio to plain's, got {max_time_ratio!r}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    cands = candidates_for(model, gammas=gammas, quantize=quantize, blocks=blocks, compile=compile,
                           budgets=budgets, strategies=strategies or (strategy,))
    exact = _gradients(copy.deepcopy(model).train(), inputs, loss_fn, seed)
    rows, built = [], []
    # every compiled candidate is one more graph of the same forward: keep dynamo from falling back to eager
    with torch._dynamo.config.patch(recompile_limit=max(8, 2 * len(cands))):
        for c in cands:
            m = c.build(copy.deepcopy(model).train())
            rows.append(_measure(c, m, inputs, loss_fn, exact, seed, cuda, draws))
            limit = target_bytes if target_bytes is not None else int(target * rows[0].bytes_of(metric))
            keep = time_all or len(rows) == 1 or rows[-1].bytes_of(metric) <= limit
            built.append(m if keep else None)
            if log:
                log(f"measured {c.name}: saved {rows[-1].saved_bytes / MiB:.1f} MiB")
        rows = _timed(built, rows, inputs, loss_fn, rounds, cuda)
    return Plan(rows, cands, limit, metric, objective, max_time_ratio)


def _check_options(inputs: tuple, metric: str, target, target_bytes, rounds: int) -> bool:
    """ValueError for a bad option; whether the inputs are on CUDA."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    cuda = any(isinstance(t, torch.Tensor) and t.is_cuda for t in inputs)
    if metric == "peak" and not cuda:
        raise ValueError("metric='peak' needs an allocator that reports its peak (CUDA inputs); use metric='saved'")
    if (target is None) == (target_bytes is None):
        raise ValueError("give exactly one of target (a fraction of plain's bytes) and target_bytes")
    if target is not None and not (isinstance(target, (int, float)) and target > 0):
        raise ValueError(f"target must be a positive fraction of plain's bytes, got {target!r}")
    if target_bytes is not None and not (isinstance(target_bytes, int) and target_bytes > 0):
        raise ValueError(f"target_bytes must be a positive integer, got {target_bytes!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    return cuda


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def _step(model: nn.Module, inputs, loss_fn) -> None:
    for p in model.parameters():
        p.grad = None
    loss_fn(model(*inputs)).backward()


def _gradients(model: nn.Module, inputs, loss_fn, seed: int, draw: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    seed_draws(seed, draw)
    _step(model, inputs, loss_fn)
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                      for p in model.parameters()])


def saved_bytes(model: nn.Module, inputs) -> int:
    """Bytes one training forward saves for backward, each storage once, parameters and buffers excluded.

    The count of :class:`dropit.saved.SavedBytes` (the meter's rule), a pack hook alone: no module hooks,
    so a compiled model runs its graph as compiled (its saves pass the hook like eager autograd's).
    """
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    with torch.enable_grad(), SavedBytes(model) as saved:
        out = model(*inputs)
    del out
    return saved.bytes


def _measure(c: Candidate, model: nn.Module, inputs, loss_fn, exact: torch.Tensor, seed: int, cuda: bool,
             draws: int = 1) -> Row:
    grads = _gradients(model, inputs, loss_fn, seed)  # also the warm-up (and the compile)
    norm = exact.norm().clamp_min(1e-30)
    error = float((grads - exact).norm() / norm)
    bias = error
    if c.gamma and get_strategy(c.strategy).draws and draws > 1:
        mean = sum((_gradients(model, inputs, loss_fn, seed, k) for k in range(1, draws)), grads) / draws
        bias = float((mean - exact).norm() / norm)
    peak = None
    if cuda:
        for p in model.parameters():
            p.grad = None
        _sync(cuda)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        _step(model, inputs, loss_fn)
        _sync(cuda)
        peak = torch.cuda.max_memory_allocated() - base
    return Row(name=c.name, gamma=c.gamma, quantize=c.quantize, strategy=c.strategy, blocks=len(c.blocks),
               compiled=c.compiled, budget=c.budget, saved_bytes=saved_bytes(model, inputs), peak_bytes=peak,
               grad_error=error, grad_bias=bias, study_top1=study_top1_cost(c.strategy, c.gamma, c.quantize))


def _timed(built: list, rows: list[Row], inputs, loss_fn, rounds: int, cuda: bool) -> list[Row]:
    """The rows with their saved ratio to row 0 and, for the built models, their timing against row 0's
    (the kit's interleaved timer, :mod:`dropit.timing`; one warm-up round)."""
    steps = {i: (lambda m=m: _step(m, inputs, loss_fn)) for i, m in enumerate(built) if m is not None}
    timings = time_against(steps, 0, rounds=rounds, warmup=1, sync=(lambda: _sync(cuda)))
    return [replace(r, saved_ratio=r.saved_bytes / rows[0].saved_bytes, timing=timings.get(i))
            for i, r in enumerate(rows)]
