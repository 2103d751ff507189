"""The quickstart's computations: what DropIT keeps of a tensor, gradient error and bytes vs gamma."""
import torch
import torch.nn as nn

from dropit.lab.notebook import teach
from dropit.strategies import num_kept


def test_drop_keeps_the_largest_and_zeros_the_rest():
    x = teach.demo_activation(batch=2, channels=8, size=16)
    d = teach.drop(x, 0.7, "mink")
    assert d.kept.sum().item() == num_kept(x.numel(), 0.7)
    torch.testing.assert_close(d.after[d.kept], x[d.kept], rtol=0, atol=0)
    assert d.after[~d.kept].abs().max().item() == 0.0
    # every dropped |x| is at most the threshold, every kept one at least
    assert x.abs()[~d.kept].max().item() <= d.threshold <= x.abs()[d.kept].min().item()


def test_drop_random_is_seeded_and_leaves_global_rng_alone():
    x = teach.demo_activation(batch=1, channels=4, size=16)
    state = torch.get_rng_state()
    a, b = teach.drop(x, 0.5, "random", seed=3), teach.drop(x, 0.5, "random", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.kept, b.kept) and a.threshold is None
    assert not torch.equal(a.kept, teach.drop(x, 0.5, "random", seed=4).kept)


def test_sampled_threshold_splits_kept_from_dropped():
    x = teach.demo_activation(batch=8, channels=16, size=32)  # > 2^16 elements: the sample is an estimate
    d = teach.drop(x, 0.9, "sampled")
    mag = x.abs()
    assert (mag[d.kept] > d.threshold).all() and (mag[~d.kept] <= d.threshold).all()
    assert abs(d.kept_fraction - 0.1) < 0.01


def test_grad_error_is_zero_at_gamma_0_and_grows_with_gamma():
    x = teach.demo_activation(batch=2, channels=8, size=16)
    rows = teach.grad_error_vs_gamma(nn.Conv2d(8, 16, 3, padding=1), x, [0.0, 0.3, 0.6, 0.9])
    errs = [r["weight_rel_error"] for r in rows]
    assert errs[0] < 1e-6
    assert all(a < b for a, b in zip(errs, errs[1:])), errs
    assert max(r["input_rel_error"] for r in rows) < 1e-6  # grad_input is exact
    assert rows[-1]["weight_cosine"] < rows[1]["weight_cosine"]


def test_grad_error_does_not_modify_the_layer():
    layer = nn.Linear(16, 4)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    teach.grad_error_vs_gamma(layer, torch.randn(8, 16), [0.5])
    assert layer.weight.grad is None and "forward" not in layer.__dict__
    for k, v in layer.state_dict().items():
        assert torch.equal(v, before[k])


def test_kept_bytes_vs_gamma_formats_and_sizes():
    x = teach.demo_activation(batch=1, channels=16, size=32)  # 16384 fp32 elements
    rows = {r["gamma"]: r for r in teach.kept_bytes_vs_gamma(x, [0.0, 0.5, 0.9, 0.99])}
    n = x.numel()
    assert rows[0.0]["format"] == "dense" and rows[0.0]["kept_bytes"] == 4 * n
    assert rows[0.5]["format"] == "bits" and rows[0.5]["kept_bytes"] == 4 * (n // 2) + n // 8
    assert rows[0.99]["format"] == "index"
    for r in rows.values():
        assert r["published_bytes"] == 8 * r["kept_elements"]
    ratios = [rows[g]["ratio"] for g in (0.0, 0.5, 0.9, 0.99)]
    assert ratios == sorted(ratios, reverse=True)


def test_cache_vs_gamma_shrinks_a_linear_stack():
    model = nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 8))
    rows = teach.cache_vs_gamma(model, [torch.randn(32, 64)], [0.5, 0.9])
    assert rows[0]["gamma"] is None and rows[0]["ratio"] == 1.0
    assert rows[2]["cache_bytes"] < rows[1]["cache_bytes"] < rows[0]["cache_bytes"]
    assert "forward" not in model[0].__dict__  # worked on a copy
