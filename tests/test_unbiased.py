"""The "unbiased" (threshold sampling) and "rescaled" strategies: expectation, kept count, draws, compile, kernels."""
import copy
import math

import pytest
import torch
import torch.nn as nn

import dropit
from dropit import kernels
from dropit.equal_memory import gamma_for_bytes, kept_bytes
from dropit.kernels import cpu, reference
from dropit.sparsify import DropSpec, expand, sparsify
from dropit.strategies import STRATEGIES, get_strategy, num_kept, unbiased_capacity, unbiased_tau
from kernel_checks import awkward_inputs

unbiased, rescaled, mink = STRATEGIES["unbiased"], STRATEGIES["rescaled"], STRATEGIES["mink"]


@pytest.fixture(autouse=True)
def _fresh_key():
    dropit.seed_draws(0, 0)
    yield
    dropit.seed_draws(0, 0)


def _record(x, gamma, strategy="unbiased", step=0, seed=0):
    dropit.seed_draws(seed, step)
    return expand(sparsify(x, DropSpec(gamma, strategy)))


def _inputs(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "gaussian": torch.randn(n, generator=g),
        "post-relu": torch.randn(n, generator=g).relu(),
        "laplace-ish": torch.randn(n, generator=g) * torch.rand(n, generator=g).log().neg(),
        "per-row-scaled": (torch.randn(256, n // 256, generator=g) * torch.logspace(-2, 2, 256)[:, None]).reshape(-1),
    }


@pytest.mark.parametrize("gamma", [0.5, 0.9])
def test_the_mean_of_many_draws_is_the_input(gamma):
    x = torch.randn(4000, generator=torch.Generator().manual_seed(3)) * torch.linspace(0.01, 3, 4000)
    draws = torch.stack([_record(x, gamma, step=t) for t in range(1500)])
    tau = float(unbiased_tau(x, gamma))
    big = x.abs() >= tau
    assert torch.equal(draws[:, big], x[big].expand(len(draws), -1))  # |x| >= tau: kept exactly at every draw
    # below tau, x is kept with probability |x|/tau as +-tau: the mean of T draws has sd sqrt(|x| tau - x^2) / sqrt(T);
    # each element's mean lies within 5 of them (4000 elements: a miss by chance is ~1e-3)
    sd = (x.abs() * tau - x.square()).clamp_min(0).sqrt() / math.sqrt(len(draws))
    z = (draws.mean(0) - x).abs()[~big] / sd[~big]
    assert float(z.max()) < 5.0, float(z.max())


def test_the_mean_weight_gradient_of_many_draws_is_the_dense_one():
    torch.manual_seed(0)
    layer = nn.Linear(64, 16)
    x, grad_out = torch.randn(32, 64).relu(), torch.randn(32, 16)
    layer(x).backward(grad_out)
    dense = layer.weight.grad.clone()
    dropit.to_dropit(layer, "unbiased", 0.9)
    grads = []
    for t in range(800):
        dropit.seed_draws(7, t)
        layer.weight.grad = None
        layer(x).backward(grad_out)
        grads.append(layer.weight.grad.clone())
    g = torch.stack(grads)
    se = g.std(0) / math.sqrt(len(g))
    z = (g.mean(0) - dense).abs() / se.clamp_min(1e-12)
    assert float(z.max()) < 5.0
    mink_layer = dropit.to_dropit(dropit.restore(copy.deepcopy(layer)), "mink", 0.9)
    mink_layer.weight.grad = None
    mink_layer(x).backward(grad_out)
    bias_mink = (mink_layer.weight.grad - dense).norm()
    assert (g.mean(0) - dense).norm() < 0.25 * bias_mink  # min-k's bias is far outside the draws' spread


@pytest.mark.parametrize("name", sorted(_inputs(1 << 10)))
@pytest.mark.parametrize("gamma", [0.5, 0.8, 0.9])
@pytest.mark.parametrize("n", [5_000, 1 << 20])
def test_the_expected_kept_count_is_within_2_percent(name, gamma, n):
    x = _inputs(n)[name]
    tau = float(unbiased_tau(x, gamma))
    expected = float(x.abs().double().div(tau).clamp_max(1).sum()) if tau > 0 else float((x != 0).sum())
    n = x.numel()
    target = min(num_kept(n, gamma), int((x != 0).sum()))  # a sparse input keeps all its non-zeros at most
    assert abs(expected / target - 1) <= 0.02, (expected, target)
    kept = int(unbiased(x, gamma).sum())
    assert abs(kept - expected) <= 6 * math.sqrt(expected) + 1  # one draw: within its own spread
    assert kept <= unbiased_capacity(n, gamma)


def test_gamma_zero_keeps_the_input_exactly():
    x = torch.randn(3, 50)
    assert torch.equal(_record(x, 0.0), x)
    assert torch.equal(_record(x, 0.0, "rescaled"), x)


def test_the_same_seed_and_step_give_the_same_record_and_another_step_another():
    x = torch.randn(20_000)
    a, b = _record(x, 0.9, step=5, seed=1), _record(x, 0.9, step=5, seed=1)
    assert torch.equal(a, b)
    assert not torch.equal(a, _record(x, 0.9, step=6, seed=1))
    assert not torch.equal(a, _record(x, 0.9, step=5, seed=2))


def test_drawing_touches_no_rng_state():
    x = torch.randn(10_000)
    state = torch.random.get_rng_state()
    _record(x, 0.9)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_kept_values_are_exact_above_tau_and_plus_minus_tau_below():
    x = torch.randn(50_000) * 3
    tau = float(unbiased_tau(x, 0.7))
    r = _record(x, 0.7)
    big, small = x.abs() >= tau, (r != 0) & (x.abs() < tau)
    assert torch.equal(r[big], x[big])
    assert torch.equal(r[small], torch.copysign(torch.full_like(x[small], tau), x[small]))
    assert small.any() and big.any()


def test_zeros_are_never_kept_and_nan_inf_always():
    x = torch.randn(10_000).relu()
    x[[10, 20, 30]] = torch.tensor([math.nan, math.inf, -math.inf])
    r = _record(x, 0.9)
    assert torch.isnan(r[10]) and r[20] == math.inf and r[30] == -math.inf
    assert (r[x == 0] == 0).all()
    assert not _record(torch.zeros(1000), 0.9).any()


def test_a_constant_tensor_is_kept_unbiased():
    x = torch.full((5000,), -2.0)
    mean = torch.stack([_record(x, 0.9, step=t) for t in range(400)]).mean(0)
    assert abs(float(mean.mean()) + 2.0) < 0.05


def test_rescaled_keeps_min_k_positions_and_the_total_magnitude():
    x = torch.randn(30_000)
    r, m = _record(x, 0.9, "rescaled"), _record(x, 0.9, "mink")
    assert torch.equal(r != 0, m != 0)
    torch.testing.assert_close(r.abs().sum(), x.abs().sum(), rtol=1e-5, atol=0)
    ratio = r[m != 0] / m[m != 0]
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0])))  # one factor per record
    assert float(ratio[0]) > 1


def test_rescaled_of_zeros_and_non_finite_stays_finite_where_it_should():
    assert not _record(torch.zeros(100), 0.9, "rescaled").any()
    x = torch.randn(1000)
    x[3] = math.inf
    r = _record(x, 0.9, "rescaled")
    assert r[3] == math.inf and torch.isfinite(r[torch.arange(1000) != 3]).all()  # scale 1 when it cannot be finite


@pytest.mark.parametrize("strategy", ["unbiased", "rescaled"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_every_dtype_keeps_a_record_of_its_own_dtype(strategy, dtype):
    x = torch.randn(4, 300).to(dtype)
    r = _record(x, 0.8, strategy)
    assert r.dtype == dtype and r.shape == x.shape
    assert (r != 0).sum() <= STRATEGIES[strategy].capacity(x.numel(), 0.8)


@pytest.mark.skipif(cpu.library() is None, reason="no C compiler: the CPU kernels are not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 100, 40_001, 300_007])
def test_the_c_draw_mask_matches_the_reference_bit_for_bit(n, dtype):
    for name, x in awkward_inputs(n, dtype):
        for gamma in (0.5, 0.9):
            tau = unbiased_tau(x, gamma).to(dtype)
            for key in (0, 123_456_789):
                assert torch.equal(cpu.draw_mask(x, float(tau), key), reference.draw_mask(x, tau, key)), (name, gamma)


def test_draw_mask_of_16_bit_inputs_runs_the_reference():
    x = torch.randn(1000).to(torch.bfloat16)
    tau = unbiased_tau(x, 0.9).to(x.dtype)
    assert torch.equal(kernels.draw_mask(x, tau, 5), reference.draw_mask(x, tau, 5))


def test_compiled_fullgraph_matches_eager_and_does_not_recompile_across_steps():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = dropit.to_dropit(nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 8)), "unbiased", 0.9)
    fast = torch.compile(model, fullgraph=True)
    x = torch.randn(16, 40)

    def grads(run, step):
        dropit.seed_draws(3, step)
        model.zero_grad(set_to_none=True)
        run(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    try:
        first = grads(fast, 0)
        with torch._dynamo.config.patch(error_on_recompile=True):
            second = grads(fast, 1)
            again = grads(fast, 0)
        for a, b in zip(first, again):
            torch.testing.assert_close(a, b)
        assert not torch.equal(first[2], second[2])  # the second layer's weight: a new step, new draws
        for a, b in zip(grads(model, 1), second):  # the compiled record keeps what eager keeps
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    finally:
        torch._dynamo.reset()


def test_an_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(ValueError, match="rescaled.*sampled.*unbiased"):
        get_strategy("unbaised")


@pytest.mark.slow
def test_equal_memory_gamma_matches_min_k_bytes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(16 * 16 * 16, 10))
    shape = (8, 3, 16, 16)
    target = kept_bytes(model, shape, "mink", 0.9)
    g = gamma_for_bytes(model, shape, "unbiased", target)
    assert 0.9 < g < 0.95  # the capacity's margin costs a little gamma
    assert kept_bytes(model, shape, "unbiased", g) <= target < kept_bytes(model, shape, "unbiased", g - 2e-3)
    assert abs(gamma_for_bytes(model, shape, "rescaled", target) - 0.9) < 1e-3  # min-k's capacity: the same gamma


def test_an_unreachable_kept_bytes_target_says_what_it_reached():
    model = nn.Sequential(nn.Linear(10, 10))
    with pytest.raises(ValueError, match=r"keeps \d+ bytes even at gamma"):
        gamma_for_bytes(model, (4, 10), "unbiased", 1)
