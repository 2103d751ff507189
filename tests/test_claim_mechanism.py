"""The mechanism's noise and bias on tiny models where the answer is known."""
import pytest
import torch
import torch.nn as nn

from dropit.lab.claim.mechanism import converted_weights, noise_and_bias, plain_scale_as_close


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))


def _batches(k=6, b=10, d=8, classes=4):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(b, d, generator=g), torch.randint(0, classes, (b,), generator=g)) for _ in range(k)]


def test_converted_weights_leave_first_and_classifier_out():
    assert converted_weights(_mlp()) == ["2.weight"]


def test_gamma_zero_has_no_bias_and_the_plain_noise():
    model, batches = _mlp(), _batches()
    (row,) = noise_and_bias(model, batches, gammas=(0.0,))
    assert row["bias"] == pytest.approx(0.0, abs=1e-6 * row["exact_norm"])
    assert row["noise_dropit"] == pytest.approx(row["noise_plain"], rel=1e-6)
    assert row["mse_dropit"] == pytest.approx(row["mse_plain"], rel=1e-6)
    assert row["noise_plain"] > 0


def test_bias_equals_the_hand_computed_min_k_gradient():
    # the middle layer's weight gradient with its input cut to the largest (1 - gamma) of |x| per minibatch
    model, batches, gamma = _mlp(), _batches(), 0.75
    (row,) = noise_and_bias(model, batches, gammas=(gamma,))
    plain, dropped = [], []
    for x, y in batches:
        h = model[1](model[0](x)).detach().requires_grad_(False)  # (B, 16): the converted layer's input
        k = int(gamma * h.numel())
        thresh = h.abs().flatten().kthvalue(k).values
        h_kept = torch.where(h.abs() > thresh, h, torch.zeros_like(h))
        out = model[2](h)
        out.retain_grad()
        nn.functional.cross_entropy(model[4](model[3](out)), y).backward()
        g_out = out.grad.double()  # (B, 16): exact, DropIT does not change it
        plain.append((g_out.T @ h.double()).flatten())
        dropped.append((g_out.T @ h_kept.double()).flatten())
        model.zero_grad()
    exact = torch.stack(plain).mean(0)
    bias = float((torch.stack(dropped).mean(0) - exact).norm())
    assert row["exact_norm"] == pytest.approx(float(exact.norm()), rel=1e-5)
    assert row["bias"] == pytest.approx(bias, rel=1e-4)
    assert row["bias"] > 0.01 * row["exact_norm"]


def test_model_is_left_unchanged_and_needs_two_batches():
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    noise_and_bias(model, _batches(), gammas=(0.5,))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="two minibatches"):
        noise_and_bias(model, _batches(k=1))


def test_the_command_measures_at_the_given_steps_of_a_run(tmp_path):
    import json

    from lab_fakes import write_cifar100

    from dropit.lab.claim.mechanism import main

    write_cifar100(tmp_path, n_train=120, n_test=40)
    sets = [f"data_dir={tmp_path}", "download=false", "batch_size=20", "threads=1", "log_every=1000", "cache_batch=4",
            "epochs=1", "model=resnet_mini"]
    out = tmp_path / "study" / "mechanism.json"
    assert main(["--out", str(out), "--steps", "1,3", "--gammas", "0.0,0.9", "--batches", "3", "--strategy", "sampled",
                 *[x for s in sets for x in ("--set", s)]]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["step"], r["gamma"]) for r in rows] == [(1, 0.0), (1, 0.9), (3, 0.0), (3, 0.9)]
    assert {r["strategy"] for r in rows} == {"sampled"}
    assert all(r["bias"] < 1e-6 * r["exact_norm"] for r in rows if r["gamma"] == 0.0)
    assert all(r["bias"] > 0 for r in rows if r["gamma"] == 0.9)
    assert (tmp_path / "study" / "work" / "mechanism-cnn").is_dir()


def test_mechanism_markdown_sorts_rows_and_says_whose_gradient_is_closer():
    from dropit.lab.claim.markdown import MECHANISM_HEADER, mechanism_markdown

    rows = [{"step": 400, "gamma": 0.9, "noise_plain": 0.6, "noise_dropit": 0.4, "bias": 0.2, "bias_rel": 0.45,
             "mse_plain": 0.5, "mse_dropit": 0.02, "exact_norm": 0.2},  # nearer than any scaling of plain gets
            {"step": 50, "gamma": 0.8, "noise_plain": 0.5, "noise_dropit": 0.51, "bias": 0.08, "bias_rel": 0.285,
             "mse_plain": 0.43, "mse_dropit": 0.45, "exact_norm": 0.28}]
    lines = mechanism_markdown({"rows": rows}).splitlines()
    assert lines[0] == "| " + " | ".join(MECHANISM_HEADER) + " |" and len(lines) == 4
    c = plain_scale_as_close(rows[1])
    assert c > 1 and lines[2] == f"| 50 | 0.80 | 0.5 | 0.51 | 0.08 | 28.5% | 0.43 | 0.45 | plain | {c:.3f} |"
    assert lines[3].startswith("| 400 | 0.90 | 0.6 | 0.4 | 0.2 | 45.0% | 0.5 | 0.02 |") and lines[3].endswith("| DropIT | none |")


def test_plain_scale_as_close_recovers_a_known_shrinkage():
    from dropit.lab.claim.mechanism import plain_scale_as_close

    g_k = torch.randn(8, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.3
    g = g_k.mean(0)

    def row(c: float) -> dict:  # DropIT's gradient taken as exactly c times plain's
        return {"mse_plain": float(((g_k - g) ** 2).sum(1).mean()), "exact_norm": float(g.norm()),
                "mse_dropit": float(((c * g_k - g) ** 2).sum(1).mean())}

    assert plain_scale_as_close(row(0.9)) == pytest.approx(0.9)
    assert plain_scale_as_close(row(1.0)) == pytest.approx(1.0)
    assert plain_scale_as_close(row(1.05)) == pytest.approx(1.05)  # farther than plain: c above 1
    closest = row(1.0)["exact_norm"] ** 2 / (row(1.0)["mse_plain"] + row(1.0)["exact_norm"] ** 2)
    assert plain_scale_as_close({**row(1.0), "mse_dropit": 0.5 * row(closest)["mse_dropit"]}) is None  # no c gets there


def _teacher_batches(k=40, b=64):
    """Labels from a fixed linear teacher: a gradient with a direction, which min-k's dropping consistently bends."""
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(8, 4, generator=g)
    xs = [torch.randn(b, 8, generator=g) for _ in range(k)]
    return [(x, (x @ teacher).argmax(1)) for x in xs]


def test_an_unbiased_strategy_reads_a_bias_within_its_standard_error_and_min_k_far_outside():
    model, batches = _mlp(), _teacher_batches()
    rows = noise_and_bias(model, batches, arms=[("mink", 0.75), ("unbiased", 0.75), ("rescaled", 0.75)])
    by = {r["strategy"]: r for r in rows}
    assert [r["gamma"] for r in rows] == [0.75, 0.75, 0.75]
    assert by["mink"]["bias"] > 4 * by["mink"]["bias_se"]
    assert by["unbiased"]["bias"] < 2.5 * by["unbiased"]["bias_se"]
    assert by["unbiased"]["noise_dropit"] > by["unbiased"]["noise_plain"]  # the price: the draws' variance


def test_the_same_arms_measure_the_same_draws_twice():
    model, batches = _mlp(), _batches()
    first, second = (noise_and_bias(model, batches, arms=[("unbiased", 0.9)]) for _ in range(2))
    assert first == second


@pytest.mark.slow
def test_memory_matched_gamma_keeps_no_more_than_min_k():
    from dropit.equal_memory import kept_bytes
    from dropit.lab.claim.mechanism import memory_matched_gamma
    from dropit.lab.claim.protocols import run_config
    from dropit.lab.models.catalog import build_model, default_dropit_exclude, dropit_filter

    cfg = run_config("cnn", "plain", seed=0, out_dir="unused", overrides=["batch_size=8"])
    assert memory_matched_gamma(cfg, "rescaled", 0.9) == 0.9
    g = memory_matched_gamma(cfg, "unbiased", 0.9)
    assert 0.9 < g < 0.93
    model = build_model("resnet_mini", 10)
    options = {"module_filter_fn": dropit_filter(default_dropit_exclude(model))}
    shape = (8, 3, 32, 32)
    assert kept_bytes(model, shape, "unbiased", g, **options) <= kept_bytes(model, shape, "mink", 0.9, **options)


def test_equal_memory_files_have_their_own_table_and_stay_out_of_the_per_strategy_list(tmp_path):
    import json

    from dropit.lab.claim.markdown import equal_memory_markdown
    from dropit.lab.claim.summary import equal_memory_files, mechanism_files

    rows = noise_and_bias(_mlp(), _batches(), arms=[("mink", 0.9), ("unbiased", 0.912)])
    doc = {"protocol": "cnn", "rows": [{"step": 5, **r} for r in rows]}
    for name in ("mechanism.json", "mechanism_sampled.json", "mechanism_equal_memory.json"):
        (tmp_path / name).write_text(json.dumps(doc))
    assert [p.name for p in mechanism_files(tmp_path)] == ["mechanism.json", "mechanism_sampled.json"]
    assert [p.name for p in equal_memory_files(tmp_path)] == ["mechanism_equal_memory.json"]
    table = equal_memory_markdown(doc).splitlines()
    assert table[0].startswith("| step | strategy | γ | bias / ‖g‖ | its standard error")
    assert [line.split(" | ")[1] for line in table[2:]] == ["`mink`", "`unbiased`"]
    mink = rows[0]
    assert f"{100 * mink['bias_se'] / mink['exact_norm']:.1f}%" in table[2]


def test_the_stochastic_rounding_prescreen_table_holds_the_committed_rows():
    import json
    from pathlib import Path

    docs = Path(__file__).parents[1] / "docs"
    page = (docs / "claim.md").read_text()
    rows = json.loads((docs / "claim" / "prescreen_stochastic_rounding.json").read_text())
    assert len(rows) == 8
    for r in rows:
        cells = (f"{100 * r['bias_rel']:.1f}% ({100 * r['bias_se'] / r['exact_norm']:.1f}%) | "
                 f"{r['noise_dropit'] / r['noise_plain']:.2f}x | {r['mse_dropit'] / r['mse_plain']:.2f}x |")
        assert f"| {r['step']} |" in page and cells in page, (r["step"], r["strategy"])
