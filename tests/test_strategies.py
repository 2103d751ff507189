"""Selection strategies: kept counts, kept energy against exact min-k, edge cases."""
import math

import pytest
import torch

from dropit.kernels import reference
from dropit.strategies import SAMPLE_SIZE, STRATEGIES, num_kept, threshold_magnitude

mink, sampled = STRATEGIES["mink"], STRATEGIES["sampled"]

N = 1 << 20


def _distributions():
    g = torch.Generator().manual_seed(1)
    # torch.distributions draw from the global RNG, whose state at collection time depends on which test
    # files were imported first: seed it here, and leave it as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        heavy = {"laplace": torch.distributions.Laplace(0.0, 1.0).sample((N,)),
                 "student-t2": torch.distributions.StudentT(2.0).sample((N,))}
    rows = torch.randn(512, N // 512, generator=g) * torch.logspace(-2, 2, 512).unsqueeze(1)
    return {
        "gaussian": torch.randn(N, generator=g),
        "post-relu": torch.randn(N, generator=g).clamp_min(0),
        "laplace": heavy["laplace"],
        "student-t2": heavy["student-t2"],
        "per-row-scaled": rows.reshape(-1),
        "nchw-post-relu": (torch.randn(8, 64, 32, 32, generator=g) * torch.linspace(0.1, 3, 32)).relu().reshape(-1),
    }


DISTRIBUTIONS = _distributions()


def test_mink_keeps_exactly_the_largest_magnitudes():
    x = torch.randn(10_001)
    keep = mink(x, 0.9)
    assert int(keep.sum()) == num_kept(x.numel(), 0.9) == 1001
    assert x[keep].abs().min() > x[~keep].abs().max()


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_sampled_keeps_97_percent_of_exact_energy_and_count_within_5_percent(name):
    x = DISTRIBUTIONS[name]
    gamma = 0.9
    exact = mink(x, gamma)
    approx = sampled(x, gamma)
    energy = float(x[approx].square().sum() / x[exact].square().sum())
    count = int(approx.sum()) / num_kept(x.numel(), gamma)
    assert energy >= 0.97, energy
    assert abs(count - 1) <= 0.05, count


@pytest.mark.parametrize("gamma", [0.5, 0.8, 0.95])
def test_sampled_kept_count_tracks_gamma(gamma):
    x = DISTRIBUTIONS["laplace"]
    count = int(sampled(x, gamma).sum()) / num_kept(x.numel(), gamma)
    # the threshold is a quantile of a sample of SAMPLE_SIZE: the kept count's relative spread is about
    # sqrt(gamma / ((1 - gamma) * SAMPLE_SIZE)) (2.4% at gamma 0.95); allow four of those
    assert abs(count - 1) <= 4 * (gamma / ((1 - gamma) * SAMPLE_SIZE)) ** 0.5


def test_sampled_is_exact_min_k_below_its_sample_size():
    x = torch.randn(SAMPLE_SIZE // 2)
    torch.testing.assert_close(sampled(x, 0.8), mink(x, 0.8), rtol=0, atol=0)


def test_sampled_threshold_uses_no_rng_and_is_deterministic():
    x = DISTRIBUTIONS["gaussian"]
    state = torch.get_rng_state()
    a, b = sampled(x, 0.9), sampled(x, 0.9)
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())  # the training RNG stream is untouched


def test_random_is_deterministic_under_a_seed_and_keeps_about_one_minus_gamma():
    x = torch.randn(N)
    torch.manual_seed(3)
    a = STRATEGIES["random"](x, 0.9)
    torch.manual_seed(3)
    b = STRATEGIES["random"](x, 0.9)
    assert torch.equal(a, b)
    assert abs(int(a.sum()) / (0.1 * N) - 1) < 0.02


@pytest.mark.parametrize("strategy", ["mink", "sampled"])
def test_all_zero_tensor_keeps_nothing_worth_keeping(strategy):
    keep = STRATEGIES[strategy](torch.zeros(1000), 0.9)
    # mink keeps its count of (equal) zeros; sampled keeps none: zeros carry no gradient either way
    assert int(keep.sum()) == (num_kept(1000, 0.9) if strategy == "mink" else 0)


def test_constant_tensor_sampled_keeps_all_ties_mink_keeps_its_count():
    x = torch.full((1000,), -2.5)
    assert int(mink(x, 0.9).sum()) == 100
    assert int(sampled(x, 0.9).sum()) == 1000  # all tie with the threshold: kept whole, never dropped whole


@pytest.mark.parametrize("strategy", ["mink", "sampled"])
@pytest.mark.parametrize("n", [1, 3, 9])
def test_tensors_smaller_than_one_over_one_minus_gamma(strategy, n):
    x = torch.arange(1.0, n + 1)
    keep = STRATEGIES[strategy](x, 0.9)
    assert int(keep.sum()) == num_kept(n, 0.9) == 1  # n - floor(0.9 n) is 1 for n < 10
    assert bool(keep[-1])  # the largest


@pytest.mark.parametrize("strategy", ["mink", "sampled"])
def test_nan_and_inf_are_kept(strategy):
    x = torch.randn(100_000)
    x[[5, 500, 50_000]] = torch.tensor([math.nan, math.inf, -math.inf])
    keep = STRATEGIES[strategy](x, 0.9)
    assert keep[[5, 500, 50_000]].all()
    assert abs(int(keep.sum()) / num_kept(x.numel(), 0.9) - 1) < 0.05


def test_sampled_threshold_is_none_when_gamma_keeps_all():
    assert threshold_magnitude(torch.randn(10), 0.05) is None
    assert bool(sampled(torch.randn(10), 0.05).all())


@pytest.mark.parametrize("name", ["gaussian", "post-relu", "student-t2"])
def test_mink_on_large_tensors_is_the_exact_top_k(name):
    x = DISTRIBUTIONS[name]
    keep = mink(x, 0.9)
    k = num_kept(x.numel(), 0.9)
    assert int(keep.sum()) == k
    threshold = x.abs().kthvalue(x.numel() - k).values  # the largest dropped magnitude
    assert bool((x[keep].abs() >= threshold).all()) and bool((x[~keep].abs() <= threshold).all())


def test_mink_falls_back_to_a_full_top_k_when_the_sample_misleads():
    n = 1 << 20
    x = torch.rand(n) * 0.01
    x[reference.sample_positions(n)] = 10.0  # the sample sees only large values
    keep = mink(x, 0.9)
    assert int(keep.sum()) == num_kept(n, 0.9)
    assert x[keep].min() >= x[~keep].max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_sampled_keeps_magnitudes_above_its_threshold_and_non_finite(dtype):
    x = torch.randn(10_000).to(dtype)
    x[:6] = torch.tensor([math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0])
    keep = sampled(x, 0.9)
    thr = threshold_magnitude(x, 0.9)
    expected = x.abs().le(thr).logical_not_()  # not(|x| <= thr): NaN passes
    assert keep.dtype == torch.bool and torch.equal(keep, expected)
    assert keep[:3].all() and not keep[3:5].any()  # non-finite kept, zeros never


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mink_keeps_exactly_k_with_and_without_ties_at_the_kth_largest(dtype):
    """bf16 has few distinct values: the k-th largest magnitude ties with others (the general path)."""
    from dropit.strategies import _mink_as_threshold

    x = DISTRIBUTIONS["gaussian"].to(dtype)
    keep = mink(x, 0.9)
    k = num_kept(x.numel(), 0.9)
    as_threshold = _mink_as_threshold(x, k, 0.9)  # None: ties, so the general path ran
    assert (as_threshold is None) == (dtype == torch.bfloat16)
    assert int(keep.sum()) == k
    assert x[keep].abs().min() >= x[~keep].abs().max()
