"""The compiler's activation memory budget reaches the partitioner, per model, and only while it compiles.

Proof by counting: at budget 1.0 a compiled step runs each forward convolution
once; at 0.0 the partitioner recomputes them in backward, so more run. Two
instances of one class compiled with different budgets each get their own
graph (dynamo would otherwise reuse the first one's). Compiling is slow on two
cores, so the model is tiny.
"""
import pytest
import torch
import torch.nn as nn

import dropit
from dropit.budget import check_budget


def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8),
                         nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


def forward_convolutions_per_step(model, x) -> int:
    """Forward convolutions (aten::convolution, recomputed ones included) that one step runs."""
    model(x).sum().backward()  # compiles
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        model(x).sum().backward()
    return sum(1 for e in prof.events() if e.name == "aten::convolution")


@pytest.mark.slow
def test_budget_zero_recomputes_convolutions_and_each_model_keeps_its_own():
    x = torch.randn(4, 3, 8, 8)
    keep = dropit.compile_budgeted(tiny_cnn(), budget=1.0)
    recompute = dropit.compile_budgeted(tiny_cnn(), budget=0.0)  # same class: must not reuse keep's graph
    default = dropit.compile_budgeted(tiny_cnn())
    assert forward_convolutions_per_step(keep, x) == 3
    assert forward_convolutions_per_step(recompute, x) == 6
    assert forward_convolutions_per_step(default, x) == 3  # the default budget is 1.0
    assert forward_convolutions_per_step(keep, x) == 3  # still its own graph after the others compiled
    assert torch._functorch.config.activation_memory_budget == 1.0  # nothing set globally


@pytest.mark.slow
def test_budgeted_gradients_equal_eager():
    x = torch.randn(4, 3, 8, 8)
    eager, compiled = tiny_cnn(), tiny_cnn()
    eager(x).square().sum().backward()
    dropit.compile_budgeted(compiled, budget=0.0)(x).square().sum().backward()
    for a, b in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True, float("nan")])
def test_bad_budget_is_refused(bad):
    with pytest.raises(ValueError, match=r"budget must be a number in \[0, 1\]"):
        check_budget(bad)
    with pytest.raises(ValueError, match="budget"):
        dropit.compile_budgeted(nn.Linear(2, 2), budget=bad)


def test_backend_cannot_be_overridden():
    with pytest.raises(ValueError, match="no backend"):
        dropit.compile_budgeted(nn.Linear(2, 2), budget=0.5, backend="eager")


@pytest.mark.slow
def test_the_train_loop_compiles_with_the_configured_budget():
    from dropit.lab.train.config import load_config
    from dropit.lab.train.loop import compile_model

    x = torch.randn(4, 3, 8, 8)
    counts = {}
    for budget in (1.0, 0.0):
        cfg = load_config(None, ["compile=true", f"compile_memory_budget={budget}"])
        model = compile_model(cfg, tiny_cnn())  # the loop's own compile call
        counts[budget] = forward_convolutions_per_step(model, x)
    assert counts == {1.0: 3, 0.0: 6}


def test_frontier_configurations_eager_and_compiled_and_each_compiled_model_its_own_class():
    from dropit.lab.measure import frontier

    assert frontier.EAGER[0] == "plain" and frontier.COMPILED[0] == "compiled plain"
    assert all(not frontier.CONFIGS[c].compiled and frontier.CONFIGS[c].baseline == "plain" for c in frontier.EAGER)
    assert all(c.startswith("compiled ") and frontier.CONFIGS[c].baseline == "compiled plain"
               for c in frontier.COMPILED)
    assert {frontier.CONFIGS[c].budget for c in frontier.COMPILED} >= {None, 1.0, 0.5, 0.2, 0.0}
    assert frontier.with_baselines(["compiled budget 0.0", "DropIT"]) == [
        "compiled plain", "plain", "compiled budget 0.0", "DropIT"]
    a, b = frontier.own_class(tiny_cnn()), frontier.own_class(tiny_cnn())
    assert type(a) is not type(b) and isinstance(a, nn.Sequential) and type(a).__name__ == "Sequential"
    assert a.state_dict().keys() == tiny_cnn().state_dict().keys()
    with pytest.raises(ValueError, match="unknown frontier configurations"):
        frontier.run(["tiny"], configs=["plain", "compiled budget 0.3"])


@pytest.mark.slow
def test_compiled_frontier_memory_rows_prove_the_budget():
    from dropit.lab.measure import frontier

    keep, recompute = (frontier.memory_row("tiny", c) for c in ("compiled plain", "compiled budget 0.0"))
    assert recompute["forward_ops"] > keep["forward_ops"]  # budget 0.0 reran forward convolutions in backward
    assert recompute["kept_bytes"] < keep["kept_bytes"] and recompute["budget"] == 0.0 and recompute["compiled"]


@pytest.mark.slow
def test_the_tenth_budgeted_model_in_a_process_is_still_compiled_with_its_budget():
    x = torch.randn(4, 3, 8, 8)
    models = [dropit.compile_budgeted(tiny_cnn(), budget=0.0) for _ in range(10)]  # past dynamo's limit of 8
    counts = [forward_convolutions_per_step(m, x) for m in models]
    assert counts == [6] * 10  # each recomputes: none fell back to eager


def nchw_activation_buffers(code: str, shape: tuple[int, int, int, int]) -> list[str]:
    """Buffers of the activation ``shape`` (N, C, H, W) that inductor allocates or reuses NCHW-contiguous.
    (A channels_last tensor's memory-order view has the shape (N, H, W, C): with C != H it is not counted.)"""
    import re

    n, c, h, w = shape
    want = f"({n}, {c}, {h}, {w}), ({c * h * w}, {h * w}, {w}, 1)"
    return [m for m in re.findall(r"(?:empty_strided_cpu\(|reinterpret_tensor\(\w+, )"
                                  r"(\(\d+, \d+, \d+, \d+\), \(\d+, \d+, \d+, \d+\))", code) if m == want]


def six_channel_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6),
                         nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 10))


@pytest.mark.slow
def test_compiled_dropit_on_cpu_leaves_no_layout_copy_of_a_cached_input():
    """Inductor runs CPU convolutions in channels_last; traced in NCHW, DropIT's custom ops forced a second copy
    of each cached input in NCHW (and conversions in backward). compile_budgeted traces in channels_last."""
    from torch._inductor.utils import run_and_get_code

    x = torch.randn(4, 3, 8, 8)
    activation = (4, 6, 8, 8)  # six channels, so that no memory-order view has this shape

    def step_code(convert, channels_last):
        model = dropit.to_dropit(six_channel_cnn(), gamma=0.5) if convert else six_channel_cnn()
        compiled = dropit.compile_budgeted(model, fullgraph=True, channels_last=channels_last)
        _, code = run_and_get_code(lambda: compiled(x).sum().backward())
        torch._dynamo.reset()
        return model, "\n".join(code)

    _, plain = step_code(False, None)  # plain's own NCHW buffers: the copy Flatten needs
    model, code = step_code(True, None)  # the default on CPU: channels_last
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert "dropit.sparsify" in code and "dropit.expand" in code
    assert len(nchw_activation_buffers(code, activation)) == len(nchw_activation_buffers(plain, activation))
    _, code = step_code(True, False)  # the control: the copies it removes
    assert len(nchw_activation_buffers(code, activation)) > len(nchw_activation_buffers(plain, activation)) + 1


def test_channels_last_only_where_inductor_would_use_it():
    from dropit.budget import inductor_uses_channels_last

    assert inductor_uses_channels_last(tiny_cnn()) == torch.backends.mkldnn.is_available()
    assert not inductor_uses_channels_last(nn.Sequential(nn.Linear(4, 4)))  # no convolution
    assert not inductor_uses_channels_last(tiny_cnn().to("meta"))  # not on a CPU
    assert not inductor_uses_channels_last(nn.Sequential(nn.Conv2d(3, 4, 3), nn.LazyLinear(5)))  # lazy: not yet


@pytest.mark.slow
def test_compiled_dropit_writes_an_unrealized_input_once():
    """A GELU's output feeds the next linear and DropIT's record: one buffer for both, not one for each."""
    import re

    from torch._inductor.utils import run_and_get_code

    torch.manual_seed(0)
    model = dropit.to_dropit(nn.Sequential(nn.Linear(16, 48), nn.GELU(), nn.Linear(48, 8)), gamma=0.9)
    compiled = dropit.compile_budgeted(model, fullgraph=True)
    x = torch.randn(4, 5, 16)
    _, code = run_and_get_code(lambda: compiled(x).sum().backward())
    forward = code[0]
    assert "dropit.sparsify" in forward
    assert len(re.findall(r"empty_strided_cpu\(\(4, 5, 48\)|empty_strided_cpu\(\(20, 48\)|empty_strided_cpu\(\(960, \)",
                          forward)) == 2  # the first linear's output, then the GELU's
