"""``torch.compile`` with the compiler's own activation memory budget, scoped to one model.

    compiled = dropit.compile_budgeted(model, budget=0.2)        # keep about a fifth of the forward
    compiled = dropit.compile_budgeted(dropit.to_dropit(model), budget=0.5, fullgraph=True)

AOTAutograd's min-cut partitioner decides what the compiled forward keeps for
backward; ``torch._functorch.config.activation_memory_budget`` (1.0 keeps what
is cheapest to keep, 0.0 recomputes everything recomputable) moves that point.
That setting is process-global and read when a graph is partitioned, which is
when dynamo compiles (the first call, and every recompile after, e.g. for a
last partial batch). So the budget here is not set globally: each model gets a
backend of its own that sets it only while it compiles.

A backend of its own also defeats dynamo's reuse of one instance's graph for
another instance of the same class (with a default backend the second model
would run the first one's graph, and with it the first one's budget): dynamo
keeps a compiled graph only for the backend that compiled it. Every such model
is one more graph of the same top frame, so the model's calls raise dynamo's
recompile limit (8 graphs per code object, past which a new model silently runs
eager) to :data:`RECOMPILE_LIMIT`: a notebook or benchmark may compile dozens.

On CPU, inductor runs every 2-D convolution in channels_last (its layout
optimization always picks it there), but a graph traced in the default layout
hands DropIT's custom ops a flat view in that layout. Each converted
convolution's input was then written twice in the forward (one copy per
layout) and its expanded record and ReLU mask gradient copied between layouts
in the backward. So a CPU model with 2-D convolutions is put in channels_last
before it is traced (``channels_last=None``, the default): the records follow
the memory order (:func:`dropit.record.memory_order`) and no layout copy is
left. Outputs and gradients are the same; the parameters stay channels_last.
"""
from __future__ import annotations

import torch
import torch.nn as nn


RECOMPILE_LIMIT = 256  # graphs per code object while a budgeted model runs (dynamo's own default: 8)


def check_budget(budget, where: str = "budget") -> float | None:
    """None, or a float in [0, 1]; anything else raises ValueError naming ``where``."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0.0 <= float(budget) <= 1.0:
        raise ValueError(f"{where} must be a number in [0, 1] (the fraction of the forward the compiler "
                         f"may keep for backward) or None, got {budget!r}")
    return float(budget)


class BudgetBackend:
    """Inductor with ``activation_memory_budget`` set while it compiles; one instance per compiled model."""

    def __init__(self, budget: float | None):
        self.budget = check_budget(budget)

    def __call__(self, gm, example_inputs):
        from torch._inductor.compile_fx import compile_fx

        if self.budget is None:
            return compile_fx(gm, example_inputs)
        with torch._functorch.config.patch(activation_memory_budget=self.budget):
            return compile_fx(gm, example_inputs)

    def __repr__(self) -> str:
        return f"BudgetBackend(budget={self.budget})"


def inductor_uses_channels_last(model: nn.Module) -> bool:
    """Whether inductor will run this model's convolutions in channels_last: 2-D convolutions on a CPU with mkldnn."""
    if isinstance(model, nn.parallel.DistributedDataParallel):  # its buckets hold views of the parameters as they are
        return False
    params = list(model.parameters())
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in params):  # lazy: nothing to convert yet
        return False
    weights = [p for p in params if p.dim() == 4]
    return (bool(weights) and all(p.device.type == "cpu" for p in weights)
            and torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available())


def compile_budgeted(model: nn.Module, *, budget: float | None = None, channels_last: bool | None = None,
                     **compile_options) -> nn.Module:
    """``torch.compile(model, **compile_options)`` whose partitioner keeps at most ``budget`` of the forward.

    ``budget=None`` leaves the partitioner's default (the graph is still this
    model's own). ``channels_last``: put the model in channels_last first;
    ``None`` does where inductor would run its convolutions so anyway
    (:func:`inductor_uses_channels_last`; a DDP-wrapped model is left as it is:
    convert it before wrapping). ``compile_options`` are ``torch.compile``'s
    (``fullgraph``, ``dynamic``, ``options``, ...), except ``backend``: the
    budget is inductor's.
    """
    budget = check_budget(budget)
    if channels_last is None:
        channels_last = inductor_uses_channels_last(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if "backend" in compile_options:
        raise ValueError("compile_budgeted compiles with inductor; pass no backend (use torch.compile for others)")
    if "mode" in compile_options:  # a mode is inductor options; torch.compile refuses a mode with a callable backend
        from torch._inductor import list_mode_options

        mode = compile_options.pop("mode")
        compile_options["options"] = {**list_mode_options(mode), **compile_options.get("options", {})}
    options = compile_options.pop("options", None)
    backend = BudgetBackend(budget)
    if options:
        inner = backend

        def backend(gm, example_inputs):  # noqa: F811  inductor's options around the budgeted compile
            with torch._inductor.config.patch(options):
                return inner(gm, example_inputs)
    compiled = torch.compile(model, backend=backend, **compile_options)
    run = compiled.forward  # dynamo's entry point for this model

    def forward(*args, **kwargs):
        # Dynamo keeps its graphs per code object, and all compiled modules share the top frame's code:
        # past recompile_limit graphs (8) in one process, a new model would silently run eager.
        with torch._dynamo.config.patch(recompile_limit=max(RECOMPILE_LIMIT, torch._dynamo.config.recompile_limit)):
            return run(*args, **kwargs)

    compiled.forward = forward
    return compiled

