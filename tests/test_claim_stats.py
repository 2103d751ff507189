"""The claim study's paired statistics on constructed inputs."""
import math

import pytest

from dropit.lab.stats import describe, paired_difference, t_quantile, t_two_sided_mass, verdict

# Student t 0.975 quantiles from any printed table (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2)
TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 19: 2.093, 30: 2.042}


@pytest.mark.parametrize("dof,want", sorted(TABLE.items()))
def test_t_quantile_matches_the_printed_table(dof, want):
    assert t_quantile(0.975, dof) == pytest.approx(want, abs=6e-4)


def test_t_distribution_limits():
    assert t_two_sided_mass(0.0, 5) == 0.0
    assert t_quantile(0.975, 1000) == pytest.approx(1.962, abs=2e-3)  # towards the normal's 1.960
    assert t_two_sided_mass(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| <= 1) = 1/2
    with pytest.raises(ValueError):
        t_quantile(0.975, 0)


def test_describe_mean_and_sample_std():
    d = describe([1.0, 2.0, 3.0, 4.0])
    assert d["mean"] == 2.5 and d["std"] == pytest.approx(math.sqrt(5 / 3))
    assert describe([7.0])["std"] is None


def test_a_known_interval():
    # differences 1, 2, 3: mean 2, sd 1, n 3 -> 2 ± 4.303 / sqrt(3) = [-0.484, 4.484]
    d = paired_difference([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
    assert d["diffs"] == [1.0, 2.0, 3.0]
    assert d["ci95_low"] == pytest.approx(2 - 4.3027 / math.sqrt(3), abs=1e-3)
    assert d["ci95_high"] == pytest.approx(2 + 4.3027 / math.sqrt(3), abs=1e-3)
    assert d["verdict"] == "within noise"


def test_verdicts_follow_the_interval():
    lower = paired_difference([50.0, 50.1, 49.9, 50.0], [51.0, 51.2, 51.0, 50.9])  # diffs -1, -1.1, -1.1, -0.9
    assert lower["ci95_high"] < 0 and lower["verdict"] == "lower by 1.03"
    higher = paired_difference([2.0, 2.1, 2.2], [1.0, 1.0, 1.0])
    assert higher["verdict"] == "higher by 1.10"
    assert verdict(0.3, -0.1, 0.7) == "within noise"
    assert paired_difference([1.0], [0.5])["verdict"] == "one seed: no interval"
    with pytest.raises(ValueError, match="one per seed"):
        paired_difference([1.0, 2.0], [1.0])
