"""The bench's statistics on constructed inputs: standard errors, seed spreads, the within-noise rule."""
import math

import pytest

from dropit.lab import stats


def test_binomial_standard_error_in_points():
    assert stats.top1_stderr(50.0, 100) == pytest.approx(5.0)  # sqrt(0.25 / 100) = 0.05
    assert stats.top1_stderr(2.3, 1000) == pytest.approx(100 * math.sqrt(0.023 * 0.977 / 1000))
    assert stats.top1_stderr(0.0, 1000) == 0.0 and stats.top1_stderr(100.0, 10) == 0.0
    assert stats.top1_stderr(50.0, 400) == pytest.approx(stats.top1_stderr(50.0, 100) / 2)  # 4x images, half the error
    with pytest.raises(ValueError, match="number of test images"):
        stats.top1_stderr(10.0, 0)


def test_one_run_carries_its_binomial_error():
    e = stats.estimate([20.0], n_images=10_000)
    assert e.value == 20.0 and e.error == pytest.approx(0.4) and e.seeds == 1
    assert str(e) == "20.00 ± 0.40" and e.how == "binomial SE, 10000 test images"


def test_several_seeds_show_their_spread_never_less_than_the_binomial_error():
    wide = stats.estimate([10.0, 14.0, 12.0], n_images=10_000)  # sd 2.0, binomial 0.32
    assert wide.value == pytest.approx(12.0) and wide.error == pytest.approx(2.0) and wide.seeds == 3
    assert wide.how == "spread over 3 seeds, 10000 test images"
    tight = stats.estimate([50.0, 50.0], n_images=100)  # identical seeds: still 5 points of test noise
    assert tight.error == pytest.approx(5.0)
    with pytest.raises(ValueError):
        stats.estimate([], n_images=100)


def test_within_noise_is_two_combined_errors():
    a = stats.Estimate(10.0, 3.0, 1000)
    b = stats.Estimate(10.0, 4.0, 1000)  # combined error 5
    assert stats.within_noise(a, stats.Estimate(19.9, 4.0, 1000))
    assert not stats.within_noise(a, stats.Estimate(20.1, 4.0, 1000))
    assert stats.within_noise(a, b) and stats.within_noise(b, a)
    assert not stats.within_noise(a, stats.Estimate(16.0, 4.0, 1000), z=1.0)


def test_the_issue_case_the_smoke_sweep_is_noise_and_chance_is_not_plain():
    # params/smoke.yaml: top-1 2.3, 2.2, 2.1 on 1000 test images; chance on CIFAR-100 is 1%
    plain = stats.estimate([2.3], n_images=1000)
    for top1 in (2.2, 2.1):
        assert stats.within_noise(stats.estimate([top1], n_images=1000), plain)
    assert stats.compare(stats.estimate([2.1], n_images=1000), plain) == "-0.20 ± 0.66 points, within noise at 1000 test images"
    trained, broken = stats.estimate([9.5], n_images=2000), stats.estimate([1.0], n_images=2000)
    assert not stats.within_noise(trained, broken)
    assert stats.compare(trained, broken) == "+8.50 ± 0.69 points"


def test_noise_words_name_the_smaller_test_set():
    assert stats.noise_words(stats.Estimate(1, 1, 500), stats.Estimate(1, 1, 2000)) == "within noise at 500 test images"


def test_seed_difference_pairs_shared_seeds_and_names_its_test():
    import pytest as _pytest

    from dropit.lab import stats as _stats

    one = _stats.seed_difference({0: 8.20}, {0: 9.35}, n_images=2000)
    assert not one.paired and one.seeds == 1 and one.test == "one seed each, binomial SEs"
    assert one.value == _pytest.approx(-1.15) and one.error == _pytest.approx(0.894, abs=1e-3) and one.within_noise
    assert str(one) == "-1.15 ± 0.89 points (one seed each, binomial SEs), within noise at 2000 test images"
    # the same seeds on both sides: paired, so the shared seed-to-seed spread cancels
    paired = _stats.seed_difference({0: 50.0, 1: 52.0, 2: 54.0}, {0: 51.0, 1: 53.1, 2: 55.2}, n_images=10_000)
    assert paired.paired and paired.seeds == 3 and paired.value == _pytest.approx(-1.1) and not paired.within_noise
    unpaired = _stats.seed_difference({0: 50.0, 1: 52.0, 2: 54.0}, {3: 51.0, 4: 53.1, 5: 55.2}, n_images=10_000)
    assert not unpaired.paired and unpaired.within_noise and unpaired.test == "unpaired, 3 and 3 seeds"
    with _pytest.raises(ValueError, match="at least one seed"):
        _stats.seed_difference({}, {0: 1.0}, n_images=100)
