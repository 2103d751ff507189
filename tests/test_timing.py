"""The kit's one step timer (dropit.timing), its one Candidate type and the planner's frozen rows."""
import dataclasses
import itertools

import pytest
import torch
import torch.nn as nn

import dropit
from dropit.candidate import Candidate
from dropit.planner import Row, candidates_for
from dropit.timing import interleave, quartiles, ratios, summarize, time_against


def test_quartiles_are_inclusive_and_stay_among_few_values():
    assert quartiles([5, 1, 3, 2, 4]) == (2, 3, 4)  # the exclusive rule would give 1.5 and 4.5
    assert quartiles([7.0]) == (7.0, 7.0, 7.0)
    assert quartiles([1, 2]) == (1.25, 1.5, 1.75)
    with pytest.raises(ValueError, match="no values"):
        quartiles([])


def test_interleave_runs_every_step_each_round_in_turn_and_counts_no_warmup():
    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in ("plain", "DropIT")}
    times = interleave(steps, rounds=3, warmup=2)
    assert calls == ["plain", "DropIT"] * 5
    assert {k: len(v) for k, v in times.items()} == {"plain": 3, "DropIT": 3}
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        interleave(steps, rounds=0)


def test_sync_brackets_each_step():
    events = []
    interleave({"a": lambda: events.append("step")}, rounds=1, warmup=0, sync=lambda: events.append("sync"))
    assert events == ["sync", "step", "sync"]


def test_ratios_are_taken_round_by_round():
    # the machine slows down 3x in the second round: the per-round ratio does not see it
    t = summarize([2.0, 6.0, 2.2], [1.0, 3.0, 1.1])
    assert t.ratio == pytest.approx(2.0) and t.ratio_q1 == pytest.approx(2.0) and t.ratio_q3 == pytest.approx(2.0)
    assert t.step_s == 2.2 and t.noise_s == pytest.approx((4.1 - 2.1) / 2) and t.rounds == 3
    with pytest.raises(ValueError, match="3 timed rounds against 2"):
        ratios([1, 2, 3], [1, 2])


def test_time_against_names_each_baseline():
    clock = itertools.count()
    fake = {"plain": lambda: None, "compiled plain": lambda: None, "compiled DropIT": lambda: next(clock)}
    got = time_against(fake, {"plain": "plain", "compiled plain": "compiled plain",
                              "compiled DropIT": "compiled plain"}, rounds=2, warmup=0)
    assert got["plain"].ratio == 1.0 and got["compiled plain"].ratio == 1.0
    assert got["compiled DropIT"].rounds == 2 and got["compiled DropIT"].ratio > 0
    same = time_against(fake, "plain", rounds=1, warmup=0)
    assert same["plain"].ratio == 1.0 and set(same) == set(fake)


def test_a_candidate_names_itself_and_builds_in_place():
    assert Candidate().name == "plain"
    assert Candidate(0.9, "int8").name == "DropIT γ=0.9 + int8"
    assert Candidate(0.9, strategy="mink").name == "DropIT γ=0.9 (mink)"
    assert Candidate(compiled=True, budget=0.2).name == "plain + compiled, budget 0.2"
    assert Candidate(0.9, label="DropIT").name == "DropIT"
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    assert Candidate(0.9, options=(("relu_mask", False),)).build(model) is model
    assert len(list(dropit.converted_modules(model))) == 2
    assert "forward" not in model[1].__dict__  # relu_mask=False: the ReLU is left as it was
    assert "forward" in Candidate(0.9).build(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))[1].__dict__  # the default


def test_a_candidate_rule_sees_the_model():
    seen = []
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    c = Candidate(0.5, module_filter=lambda m: (seen.append(m), lambda mod, name: name == "1")[1])
    c.convert(model)
    assert seen == [model] and [name for name, _, _ in dropit.converted_modules(model)] == ["1"]


def test_the_compiled_candidate_traces_a_conv_model_in_channels_last_on_cpu():
    if not torch.backends.mkldnn.is_available():
        pytest.skip("inductor's CPU layout choice needs mkldnn")
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    compiled = Candidate(0.9, compiled=True, fullgraph=True).build(model)
    assert compiled is not model and model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_planner_rows_are_frozen_and_read_by_name():
    row = Row(name="plain", gamma=None, quantize=None, strategy="sampled", blocks=0, compiled=False, budget=None,
              saved_bytes=100, peak_bytes=None, grad_error=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.saved_bytes = 1
    assert row["saved_bytes"] == 100 and row.step_s is None and row.as_dict()["time_ratio"] is None
    timed = dataclasses.replace(row, timing=summarize([2.0, 2.0], [1.0, 1.0]))
    assert timed.time_ratio == 2.0 and timed.as_dict()["step_s"] == 2.0


def test_the_planner_weighs_the_strategies_it_is_given():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    names = [c.name for c in candidates_for(model, gammas=(0.9,), quantize=(None,), strategies=("sampled", "mink"))]
    assert names == ["plain", "DropIT γ=0.9", "DropIT γ=0.9 (mink)"]
    with pytest.raises(ValueError, match="unknown DropIT strategy"):
        candidates_for(model, strategies=("nonesuch",))
