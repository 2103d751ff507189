"""The per-step counter of bytes kept for backward: sizes, the meter's totals, no side effects."""
import gc
import weakref

import pytest
import torch
import torch.nn as nn

import dropit
from dropit.lab.models.catalog import build_model
from dropit.lab.train.step_memory import StepMemory


def test_counts_saved_inputs_and_leaves_out_parameters():
    layer = nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with StepMemory(layer) as counter:
        out = layer(x)  # addmm saves x (its weight is a parameter: not counted)
    assert counter.bytes == 2 * 8 * 4 and counter.tensors >= 1
    with StepMemory(layer) as counter, torch.no_grad():
        layer(x)
    assert counter.bytes is None  # nothing saved: not a zero
    del out


def test_a_storage_saved_twice_is_counted_once():
    a, b = nn.Linear(32, 4), nn.Linear(32, 4)
    x = torch.randn(8, 32, requires_grad=True)
    with StepMemory(nn.ModuleList([a, b])) as counter:
        h = x * 2
        a(h) + b(h[:, :32])  # h saved by both layers, once through a view
    assert counter.bytes == 8 * 32 * 4


@pytest.mark.parametrize("model_name,dropit_kw", [
    ("resnet_mini", None), ("resnet_mini", dict(strategy="mink", gamma=0.9)),
    ("resnet_mini", dict(strategy="sampled", gamma=0.5)), ("vit_tiny", None), ("vit_tiny", dict(gamma=0.9)),
])
def test_total_equals_the_memory_meter(model_name, dropit_kw):
    torch.manual_seed(0)
    model = build_model(model_name, 10)
    if dropit_kw is not None:
        dropit.to_dropit(model, **dropit_kw)
    x = torch.randn(4, 3, 32, 32)
    with StepMemory(model) as counter:
        out = model(x)
    out.sum().backward()
    # the meter's total of the same forward (buffers advance, but sizes do not depend on them)
    assert counter.bytes == dropit.measure_cache(model, x).total_bytes


def test_gradients_are_unchanged_by_counting():
    torch.manual_seed(0)
    model = dropit.to_dropit(build_model("resnet_mini", 10), strategy="mink", gamma=0.8)
    x = torch.randn(4, 3, 32, 32)
    grads = []
    for count in (False, True):
        model.zero_grad(set_to_none=True)
        counter = StepMemory(model) if count else torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)
        with counter:
            out = model(x)
        out.square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_forward_without_backward_leaves_nothing_alive():
    model = nn.Sequential(nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, 4))  # sigmoid saves its output
    x = torch.randn(4, 16)
    gc.disable()
    try:
        with StepMemory(model):
            hidden = model[1](model[0](x))
            out = model[2](hidden)
        alive = weakref.ref(hidden)
        del hidden, out
        assert alive() is None  # freed by reference counting alone: no cycle through the graph
    finally:
        gc.enable()


def test_counts_with_the_meters_rule_on_the_meta_device_too():
    """One hook in the core for both: meta storages (all at address 0) are still told apart."""
    model = nn.Sequential(nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 8)).to("meta")
    x = torch.empty(2, 8, device="meta")
    with StepMemory(model) as counter:
        model(x)
    # the first layer's input, the sigmoid's output, the second layer's input (that same output)
    assert counter.bytes == 2 * (2 * 8 * 4) == dropit.estimate_cache(model, (2, 8)).total_bytes
