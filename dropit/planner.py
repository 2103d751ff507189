"""A memory target, planned: measure the candidate configurations on your model and pick the fastest that fits.

    import dropit
    loss_fn = lambda out: F.cross_entropy(out, labels)
    p = dropit.plan(model, images, loss_fn, target=0.3)   # keep at most 0.3 of what the plain model keeps
    print(p.table())                                      # every candidate: kept, peak, step time, gradient error
    model = p.apply(model)                                # the pick, applied in place (compiled if it compiles)

Candidates are DropIT at each of ``gammas``, with each ``quantize`` level,
combined with checkpointed blocks (none, every other, every block of the
model's most repeated block class), and with ``compile=True`` every one is
compiled at each of the compiler's memory ``budgets`` (see
:mod:`dropit.budget`). Nothing is estimated: each candidate is built on a copy
of the model and measured on the example batch:

- ``kept_bytes``: what one training forward keeps for backward, each storage
  once, parameters and buffers left out (the meter's count, taken with a pack
  hook alone, so a compiled graph is not recompiled to measure it);
- ``peak_bytes`` (CUDA only): the allocator's peak over one step above what was
  allocated before it;
- ``step_s``: the median over ``rounds`` interleaved rounds (one step of each
  candidate in turn, so drifts in machine speed hit all alike) of forward,
  loss and backward, with ``noise_s``, half the spread between its quartiles;
- ``grad_error``: the relative L2 error of all parameter gradients against the
  plain model's, on the same batch (0 for exact configurations).

The pick is the candidate with the smallest median step among those within the
target. The compiler's budget is not monotonic in memory, hence measuring every
candidate rather than bisecting. A target below every candidate raises
ValueError naming the smallest figure reached.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn as nn

from .budget import check_budget, compile_budgeted
from .checkpoint import checkpoint_blocks
from .convert import to_dropit
from .quant import check_quantize
from .saved import SavedBytes
from .strategies import DEFAULT_STRATEGY, check_gamma

MiB = 2**20
METRICS = ("kept", "peak")


@dataclass(frozen=True)
class Candidate:
    """One configuration: DropIT's rate and quantize level, checkpointed blocks, compile and its budget."""

    gamma: float | None = None  # None: no DropIT
    quantize: str | None = None
    blocks: tuple[str, ...] = ()  # checkpointed blocks
    blocks_label: str = ""  # "every other block (4)", ...
    compiled: bool = False
    budget: float | None = None  # the compiler's activation memory budget (compiled only)
    strategy: str = DEFAULT_STRATEGY

    @property
    def name(self) -> str:
        parts = ["plain" if self.gamma is None else f"DropIT γ={self.gamma:g}"]
        parts += [self.quantize] if self.quantize else []
        parts += [f"checkpoint {self.blocks_label}"] if self.blocks else []
        parts += ([f"compiled, budget {self.budget:g}"] if self.budget is not None else ["compiled"]) if self.compiled else []
        return " + ".join(parts)

    def build(self, model: nn.Module) -> nn.Module:
        """This configuration applied to ``model`` in place; the module to train (compiled if it compiles)."""
        if self.blocks:
            checkpoint_blocks(model, self.blocks)
        if self.gamma is not None:
            to_dropit(model, strategy=self.strategy, gamma=self.gamma, quantize=self.quantize)
        return compile_budgeted(model, budget=self.budget) if self.compiled else model


@dataclass
class Plan:
    """The measured table, the target and the pick; ``apply(model)`` applies the pick."""

    rows: list[dict]  # one per candidate, plain first; see the module docstring for the columns
    candidates: list[Candidate]
    target_bytes: int
    metric: str  # "kept" | "peak"
    pick: Candidate = field(init=False)

    def __post_init__(self):
        self.pick = self.candidates[choose(self.rows, self.target_bytes, self.metric)]

    @property
    def plain_bytes(self) -> int:
        return self.rows[0][f"{self.metric}_bytes"]

    def pick_for(self, fraction: float) -> Candidate:
        """The pick for another target, a fraction of plain's (from this table; a timed table is needed)."""
        return self.candidates[choose(self.rows, int(fraction * self.plain_bytes), self.metric)]

    def apply(self, model: nn.Module) -> nn.Module:
        """The pick applied to ``model`` in place; returns the module to train (compiled if the pick compiles)."""
        return self.pick.build(model)

    def table(self) -> str:
        lines = [f"target: {self.metric} <= {self.target_bytes / MiB:.1f} MiB; pick: {self.pick.name}",
                 f"{'candidate':<58}{'kept MiB':>9}{'ratio':>7}{'peak MiB':>9}{'step ms':>9}{'±':>8}"
                 f"{'vs plain':>9}{'grad err':>9}"]
        for r in self.rows:
            peak = f"{r['peak_bytes'] / MiB:9.1f}" if r["peak_bytes"] is not None else f"{'-':>9}"
            timed = (f"{r['step_s'] * 1e3:9.1f}{r['noise_s'] * 1e3:8.1f}{r['time_ratio']:8.3f}x"
                     if r["step_s"] is not None else f"  {'(over target: not timed)':<22}")
            mark = " <- pick" if r["name"] == self.pick.name else ""
            lines.append(f"{r['name']:<58}{r['kept_bytes'] / MiB:9.1f}{r['kept_ratio']:7.3f}{peak}{timed}"
                         f"{r['grad_error']:9.1e}{mark}")
        return "\n".join(lines)


def choose(rows: list[dict], target_bytes: int, metric: str = "kept") -> int:
    """Index of the fastest timed row whose ``metric`` bytes are within the target; ValueError if none is."""
    fits = [i for i, r in enumerate(rows) if r[f"{metric}_bytes"] <= target_bytes and r["step_s"] is not None]
    if not fits:
        low = min(range(len(rows)), key=lambda i: rows[i][f"{metric}_bytes"])
        raise ValueError(
            f"no candidate keeps {metric} bytes within the target of {target_bytes / MiB:.2f} MiB "
            f"({target_bytes / rows[0][f'{metric}_bytes']:.3f} of plain's); the smallest reached is "
            f"{rows[low][f'{metric}_bytes'] / MiB:.2f} MiB ({rows[low][f'{metric}_bytes'] / rows[0][f'{metric}_bytes']:.3f} "
            f"of plain's) by {rows[low]['name']}: raise the target, or add candidates (higher gammas, int4, "
            "more checkpointed blocks, compile=True with a lower budget)")
    return min(fits, key=lambda i: rows[i]["step_s"])


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
                   strategy: str = DEFAULT_STRATEGY) -> list[Candidate]:
    """Every combination, plain (uncheckpointed, at the first budget) first."""
    gammas = [check_gamma(g, "gammas") for g in gammas]
    levels = [check_quantize(q) for q in quantize]
    budgets = [check_budget(b, "budgets") for b in budgets] if compile else [None]
    drops = [(None, None)] + [(g, q) for g in gammas for q in levels]
    reference = Candidate(compiled=compile, strategy=strategy)  # what "of plain's" means
    every = [Candidate(g, q, names, label, compile, b, strategy)
             for names, label in _block_choices(model, blocks) for b in budgets for g, q in drops]
    return [reference] + [c for c in every if c != reference]


def plan(model: nn.Module, inputs, loss_fn: Callable[[object], torch.Tensor], *, target: float | None = None,
         target_bytes: int | None = None, metric: str = "kept", gammas: Sequence[float] = (0.5, 0.9),
         quantize: Sequence[str | None] = (None, "int8", "int4"), blocks: Sequence[Sequence[str]] | None = None,
         compile: bool = False, budgets: Sequence[float | None] = (None, 0.5, 0.2, 0.0),
         strategy: str = DEFAULT_STRATEGY, rounds: int = 5, time_all: bool = False, seed: int = 0,
         log: Callable[[str], None] | None = None) -> Plan:
    """Measure the candidates on ``model`` (left untouched) and pick the fastest within the target.

    Args:
        inputs: the example batch: a tensor, or a tuple of the model's positional inputs.
        loss_fn: ``loss_fn(output) -> scalar tensor`` (close over the labels).
        target: a fraction of the plain model's bytes (``metric``); or ``target_bytes``: bytes. Exactly one.
        metric: ``"kept"`` (bytes kept for backward by one forward) or ``"peak"`` (the step's
            allocator peak; CUDA only).
        gammas, quantize, blocks, compile, budgets, strategy: the candidates (see :func:`candidates_for`);
            ``blocks`` is a list of lists of block names to checkpoint (default: none, every other
            and every block of the most repeated block class).
        rounds: timed rounds (one step of each candidate each round, after a warm-up).
        time_all: time every candidate, not only those within the target (for :meth:`Plan.pick_for`).
        seed: the RNG seed before each gradient step (dropout and random strategies alike).
        log: called with a line per candidate measured.
    """
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    cuda = any(isinstance(t, torch.Tensor) and t.is_cuda for t in inputs)
    if metric == "peak" and not cuda:
        raise ValueError("metric='peak' needs an allocator that reports its peak (CUDA inputs); use metric='kept'")
    if (target is None) == (target_bytes is None):
        raise ValueError("give exactly one of target (a fraction of plain's bytes) and target_bytes")
    if target is not None and not (isinstance(target, (int, float)) and target > 0):
        raise ValueError(f"target must be a positive fraction of plain's bytes, got {target!r}")
    if target_bytes is not None and not (isinstance(target_bytes, int) and target_bytes > 0):
        raise ValueError(f"target_bytes must be a positive integer, got {target_bytes!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    cands = candidates_for(model, gammas=gammas, quantize=quantize, blocks=blocks, compile=compile,
                           budgets=budgets, strategy=strategy)
    exact = _gradients(copy.deepcopy(model).train(), inputs, loss_fn, seed)
    rows, built = [], []
    # every compiled candidate is one more graph of the same forward: keep dynamo from falling back to eager
    with torch._dynamo.config.patch(recompile_limit=max(8, 2 * len(cands))):
        for c in cands:
            m = c.build(copy.deepcopy(model).train())
            rows.append(_measure(c, m, inputs, loss_fn, exact, seed, cuda))
            limit = target_bytes if target_bytes is not None else int(target * rows[0][f"{metric}_bytes"])
            keep = time_all or len(rows) == 1 or rows[-1][f"{metric}_bytes"] <= limit
            built.append(m if keep else None)
            if log:
                log(f"measured {c.name}: kept {rows[-1]['kept_bytes'] / MiB:.1f} MiB")
        _time(built, rows, inputs, loss_fn, rounds, cuda)
    return Plan(rows, cands, limit, metric)


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def _step(model: nn.Module, inputs, loss_fn) -> None:
    for p in model.parameters():
        p.grad = None
    loss_fn(model(*inputs)).backward()


def _gradients(model: nn.Module, inputs, loss_fn, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    _step(model, inputs, loss_fn)
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                      for p in model.parameters()])


def kept_bytes(model: nn.Module, inputs) -> int:
    """Bytes one training forward keeps for backward, each storage once, parameters and buffers excluded.

    The count of :class:`dropit.saved.SavedBytes` (the meter's rule), a pack hook alone: no module hooks,
    so a compiled model runs its graph as compiled (its saves pass the hook like eager autograd's).
    """
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    with torch.enable_grad(), SavedBytes(model) as saved:
        out = model(*inputs)
    del out
    return saved.bytes


def _measure(c: Candidate, model: nn.Module, inputs, loss_fn, exact: torch.Tensor, seed: int, cuda: bool) -> dict:
    grads = _gradients(model, inputs, loss_fn, seed)  # also the warm-up (and the compile)
    error = float((grads - exact).norm() / exact.norm().clamp_min(1e-30))
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
    return {"name": c.name, "gamma": c.gamma, "quantize": c.quantize, "blocks": len(c.blocks),
            "compiled": c.compiled, "budget": c.budget, "kept_bytes": kept_bytes(model, inputs), "peak_bytes": peak,
            "grad_error": error, "step_s": None, "noise_s": None, "time_ratio": None}


def _time(built: list, rows: list[dict], inputs, loss_fn, rounds: int, cuda: bool) -> None:
    """Fill step_s, noise_s and time_ratio (median of per-round ratios to row 0) of the built models' rows."""
    live = [i for i, m in enumerate(built) if m is not None]
    times: dict[int, list[float]] = {i: [] for i in live}
    for r in range(rounds + 1):  # round 0 warms up
        for i in live:
            _sync(cuda)
            t0 = time.perf_counter()
            _step(built[i], inputs, loss_fn)
            _sync(cuda)
            if r:
                times[i].append(time.perf_counter() - t0)
    for i in live:
        ts = sorted(times[i])
        # inclusive quartiles: a single slow round among a few moves them to its neighbour, not towards itself
        q1, _, q3 = statistics.quantiles(ts, n=4, method="inclusive") if len(ts) > 1 else (ts[0],) * 3
        rows[i].update(step_s=statistics.median(ts), noise_s=(q3 - q1) / 2,
                       time_ratio=statistics.median(t / b for t, b in zip(times[i], times[0])))
    for row in rows:
        row["kept_ratio"] = row["kept_bytes"] / rows[0]["kept_bytes"]
