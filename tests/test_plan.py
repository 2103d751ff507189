"""dropit.plan on a small residual CNN: the pick fits the target when measured afresh, an unreachable target
is refused naming the smallest figure, ``apply`` converts the model, and the compiler's budget is a candidate."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import dropit
from dropit.planner import Candidate, choose, repeated_blocks, saved_bytes


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.relu = nn.Conv2d(c, c, 3, padding=1), nn.ReLU()

    def forward(self, x):
        return self.relu(x + self.conv2(self.relu(self.bn(self.conv1(x)))))


def small_resnet():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), Block(16), Block(16), Block(16), Block(16),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(1)
    return torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))


@pytest.fixture(scope="module")
def planned(batch):
    x, y = batch
    return dropit.plan(small_resnet(), x, lambda out: F.cross_entropy(out, y), target=0.3, gammas=(0.9,),
                       quantize=(None, "int8"), rounds=3, time_all=True)


@pytest.mark.slow
def test_the_pick_fits_when_measured_afresh_and_is_the_fastest_that_fits(planned, batch):
    x, _ = batch
    model = planned.apply(small_resnet())
    assert saved_bytes(model, x) <= planned.target_bytes
    assert dropit.measure_cache(model, x).total_bytes <= planned.target_bytes  # the kit's meter agrees
    fits = [r for r in planned.rows if r.saved_bytes <= planned.target_bytes]
    pick = next(r for r in planned.rows if r.name == planned.pick.name)
    assert pick.step_s == min(r.step_s for r in fits)
    assert planned.rows[0].name == "plain" and planned.rows[0].saved_ratio == 1.0
    assert planned.rows[0].grad_error == 0.0 and all(r.grad_error > 0 for r in planned.rows if r.gamma)
    assert "<- pick" in planned.table()


@pytest.mark.slow
def test_apply_converts_the_model(planned):
    model = small_resnet()
    out = planned.apply(model)
    assert out is model  # eager pick: converted in place
    pick = planned.pick
    assert pick.gamma is not None  # at 0.3 of plain's, this model needs DropIT
    spec = next(f.spec for _, _, f in dropit.converted_modules(model) if f.kind == "conv")
    assert spec.gamma == pick.gamma
    assert len(list(dropit.checkpointed_modules(model))) == len(pick.blocks)


@pytest.mark.slow
def test_an_unreachable_target_names_the_smallest_reachable_figure(planned, batch):
    smallest = min(r.saved_bytes for r in planned.rows)
    with pytest.raises(ValueError, match=r"smallest reached is .* MiB \(0\.\d+ of plain's\) by DropIT"):
        choose(planned.rows, smallest - 1)
    x, y = batch
    with pytest.raises(ValueError, match="smallest reached"):
        dropit.plan(small_resnet(), x, lambda out: F.cross_entropy(out, y), target=0.01, gammas=(0.9,),
                    quantize=(None,), blocks=[[]], rounds=1)


@pytest.mark.slow
def test_pick_for_moves_with_the_target(planned):
    loose, tight = planned.pick_for(1.0), planned.pick_for(0.2)
    rows = {r.name: r for r in planned.rows}
    assert rows[tight.name].saved_ratio <= 0.2 and rows[loose.name].saved_ratio <= 1.0
    assert rows[loose.name].step_s <= rows[tight.name].step_s


def test_repeated_blocks_finds_the_residual_blocks():
    assert repeated_blocks(small_resnet()) == ["2", "3", "4", "5"]
    assert repeated_blocks(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) == []


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of target"),
    ({"target": 0.5, "target_bytes": 10}, "exactly one of target"),
    ({"target": -1}, "positive fraction"),
    ({"target_bytes": 1.5}, "positive integer"),
    ({"target": 0.5, "metric": "peak"}, "CUDA"),
    ({"target": 0.5, "metric": "rss"}, "metric must be one of"),
    ({"target": 0.5, "gammas": (1.5,)}, "gamma"),
    ({"target": 0.5, "quantize": ("int3",)}, "quantize"),
    ({"target": 0.5, "rounds": 0}, "rounds"),
    ({"target": 0.5, "compile": True, "budgets": (2.0,)}, "budgets must be a number in"),
])
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dropit.plan(nn.Linear(4, 2), torch.randn(2, 4), lambda out: out.sum(), **kwargs)


@pytest.mark.slow
def test_compiled_candidates_at_budgets_each_compile_their_own():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 8, 3, padding=1), nn.Tanh(),
                          nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    x = torch.randn(4, 3, 8, 8)
    p = dropit.plan(model, x, lambda out: out.square().mean(), target=1.0, gammas=(), compile=True,
                    budgets=(None, 0.0), rounds=1, time_all=True)
    names = [r.name for r in p.rows]
    assert names == ["plain + compiled", "plain + compiled, budget 0"]
    assert p.rows[1].saved_bytes < p.rows[0].saved_bytes  # budget 0 recomputes, keeping less
    assert all(r.grad_error < 1e-5 for r in p.rows)  # the budget is exact
    compiled = Candidate(compiled=True, budget=0.0).build(copy.deepcopy(model))
    compiled(x).sum().backward()  # compiles
    assert saved_bytes(compiled, x) == p.rows[1].saved_bytes  # the same graph, measured afresh


@pytest.fixture(scope="module")
def weighed(batch):
    x, y = batch
    return dropit.plan(small_resnet(), x, lambda out: F.cross_entropy(out, y), target=0.9, gammas=(0.8,),
                       quantize=(None,), blocks=[[]], strategies=("mink", "unbiased"), rounds=2, draws=6)


def test_grad_bias_is_the_error_for_min_k_and_averages_down_for_unbiased(weighed):
    rows = {r.strategy: r for r in weighed.rows if r.gamma}
    assert rows["mink"].grad_bias == rows["mink"].grad_error
    assert rows["unbiased"].grad_bias < 0.7 * rows["unbiased"].grad_error  # six draws: the variance averages out
    assert weighed.rows[0].grad_bias == 0.0


def test_the_table_shows_the_study_cost_where_one_was_measured(weighed):
    rows = {r.strategy: r for r in weighed.rows if r.gamma}
    (cost,) = rows["mink"].study_top1
    assert (cost.protocol, cost.seeds) == ("cnn", 3) and cost.ci95[0] < cost.mean < cost.ci95[1] < 0
    assert rows["unbiased"].study_top1 == ()
    table = weighed.table()
    assert "cnn -0.98 [-1.21, -0.75]" in table and "bias" in table


def test_faithful_picks_the_smallest_bias_within_the_time_budget(weighed):
    from dropit.planner import Plan

    faithful = Plan(weighed.rows, weighed.candidates, weighed.target_bytes, "saved", objective="faithful")
    best = min((r for r in weighed.rows if r.timing is not None and r.saved_bytes <= weighed.target_bytes),
               key=lambda r: (r.grad_bias, r.grad_error))
    assert faithful.pick.name == best.name
    slowest = max(r.time_ratio for r in weighed.rows)
    assert choose(weighed.rows, weighed.target_bytes, objective="faithful", max_time_ratio=slowest) is not None
    with pytest.raises(ValueError, match="runs within 0.01x plain's step; the fastest"):
        choose(weighed.rows, weighed.target_bytes, objective="faithful", max_time_ratio=0.01)
    with pytest.raises(ValueError, match="objective must be one of fastest, faithful"):
        choose(weighed.rows, weighed.target_bytes, objective="quickest")


def test_the_evidence_table_matches_the_committed_study():
    import json
    from pathlib import Path

    from dropit.evidence import STUDY_TOP1
    from dropit.lab.claim.protocols import ARMS

    summary = json.loads((Path(__file__).parents[1] / "docs" / "claim" / "claim.json").read_text())
    seen = 0
    for protocol, body in summary["protocols"].items():
        for arm, stats in body["arms"].items():
            top1 = (stats.get("diff_vs_plain") or {}).get("top1")
            settings = ARMS[protocol][arm]
            if not top1 or not settings.get("dropit") or top1["n"] < 3:
                continue
            key = (settings["dropit_strategy"], settings["dropit_gamma"], settings.get("dropit_quantize"))
            (cost,) = [c for c in STUDY_TOP1[key] if c.protocol == protocol]
            assert (cost.mean, cost.ci95, cost.seeds) == (round(top1["mean"], 2), (round(top1["ci95_low"], 2),
                                                          round(top1["ci95_high"], 2)), top1["n"]), (protocol, arm)
            seen += 1
    assert seen == sum(len(v) for v in STUDY_TOP1.values())  # every entry of the table comes from the summary
