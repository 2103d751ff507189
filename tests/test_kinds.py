"""The registry of module kinds: one entry decides whether and how a module is converted."""
import pickle

import pytest
import torch
import torch.nn as nn

import dropit
from dropit import kinds


class Scale(nn.Module):
    """y = w * x: a module no built-in kind knows."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return self.weight * x


def _registered(monkeypatch, **options):
    calls = []

    def scale_forward(m, spec, x):
        calls.append(spec.gamma)
        return m.weight * x

    entry = kinds.Kind("scale", kinds.InstanceOf((Scale,)), scale_forward, **options)
    monkeypatch.setattr(kinds, "KINDS", (entry, *kinds.KINDS))
    return calls


def test_a_kind_added_as_one_entry_is_converted_and_restored(monkeypatch):
    calls = _registered(monkeypatch)
    model = nn.Sequential(nn.Linear(4, 4), Scale())
    dropit.to_dropit(model, gamma=0.5, gamma_by_name={"1": 0.25})
    assert {name: fwd.kind for name, _, fwd in dropit.converted_modules(model)} == {"0": "linear", "1": "scale"}
    x = torch.randn(3, 4)
    model(x).sum().backward()
    assert calls == [0.25]  # its training forward ran, with its own rate
    with torch.no_grad():
        model(x)
    assert calls == [0.25]  # outside training the module's own forward runs
    dropit.restore(model)
    assert list(dropit.converted_modules(model)) == [] and "forward" not in model[1].__dict__


def test_the_entrys_option_and_filter_decide(monkeypatch):
    _registered(monkeypatch, option="quantize")
    converted = lambda model: [fwd.kind for _, _, fwd in dropit.converted_modules(model)]
    assert converted(dropit.to_dropit(Scale())) == []  # a "quantize" kind needs quantize=
    assert converted(dropit.to_dropit(Scale(), quantize="int8")) == ["scale"]
    assert converted(dropit.to_dropit(Scale(), quantize="int8", module_filter_fn=lambda m, n: False)) == []


def test_unfiltered_kinds_ignore_module_filter_fn():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2))
    dropit.to_dropit(model, module_filter_fn=lambda m, name: False)
    assert [fwd.kind for _, _, fwd in dropit.converted_modules(model)] == ["relu", "maxpool"]


def test_first_matching_entry_wins_and_names_are_unique():
    assert len({kind.name for kind in kinds.KINDS}) == len(kinds.KINDS)
    mha = nn.MultiheadAttention(8, 2)
    assert kinds.entry_of(mha).name == "mha" and kinds.entry_of(mha.out_proj).name == "linear"
    assert kinds.entry_of(nn.ConvTranspose2d(2, 2, 3)).name == "conv_transpose"
    assert kinds.entry_of(nn.Conv2d(2, 2, 3)).name == "conv"
    assert kinds.entry_of(nn.Sigmoid()) is None
    assert {k.name for k in kinds.KINDS if k.option == "quantize"} == {"batchnorm", "layernorm", "rmsnorm", "gelu", "silu",
                                                                           "gated_mlp"}


def test_an_entry_with_an_unknown_option_is_refused():
    with pytest.raises(ValueError, match="option must be one of"):
        kinds.Kind("x", kinds.InstanceOf((Scale,)), lambda m, spec, x: x, option="sometimes")


def test_the_table_pickles_with_converted_models():
    assert pickle.loads(pickle.dumps(kinds.KINDS)) == kinds.KINDS
