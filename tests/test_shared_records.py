"""A tensor cached by several DropIT layers is sparsified and stored once."""
import copy
import gc
import weakref

import torch
import torch.nn as nn
import torchvision

import dropit
from dropit.sparsify import observe


class Fork(nn.Module):
    """One tensor into two convolutions, as a ResNet block's input feeds conv1 and the shortcut."""

    def __init__(self, modify_between=False):
        super().__init__()
        self.a = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.b = nn.Conv2d(8, 8, 1, bias=False)
        self.modify_between = modify_between

    def forward(self, x):
        h = x * 1.0  # a fresh tensor, so an in-place write below is legal
        out = self.a(h)
        if self.modify_between:
            h.mul_(3.0)
        return out + self.b(h)


def _weight_grads(model, x):
    model.zero_grad()
    model(x).square().sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _reference_grads(model, x, gamma, scale_b=1.0):
    """The same gradients from dense autograd on independently min-k-sparsified inputs."""
    ref = copy.deepcopy(model)
    h = x * 1.0
    sparse = dropit.expand(dropit.sparsify(h, dropit.DropSpec(gamma, "mink")))
    sparse_b = dropit.expand(dropit.sparsify(h * scale_b, dropit.DropSpec(gamma, "mink")))
    ref.zero_grad()
    # grad_weight from the sparsified input; the output (and so grad_out) from the dense one
    out_a = nn.functional.conv2d(h, ref.a.weight, padding=1)
    out_b = nn.functional.conv2d(h * scale_b, ref.b.weight)
    g = 2 * (out_a + out_b)
    ga = torch.ops.aten.convolution_backward(g, sparse, ref.a.weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False])[1]
    gb = torch.ops.aten.convolution_backward(g, sparse_b, ref.b.weight, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, False])[1]
    return {"a.weight": ga, "b.weight": gb}


def test_two_layers_on_one_tensor_store_one_record():
    model = dropit.to_dropit(Fork(), strategy="mink", gamma=0.75)
    x = torch.randn(2, 8, 16, 16)
    report = dropit.measure_cache(model, x)
    n = x.numel()
    record = n // 4 * 4 + n // 8  # kept fp32 values + bitmask
    layers = {r["name"]: r for r in report.to_rows()}
    assert layers["a"]["bytes"] == record and "b" not in layers  # b's record is a's storage
    assert report.total_bytes == record
    assert report.dense_bytes == n * 4  # the dense input, counted once


def test_shared_record_gives_each_layer_its_exact_gradient():
    model = dropit.to_dropit(Fork(), strategy="mink", gamma=0.75)
    x = torch.randn(2, 8, 16, 16)
    got = _weight_grads(model, x)
    want = _reference_grads(model, x, 0.75)
    for name in want:
        torch.testing.assert_close(got[name], want[name])


def test_a_tensor_written_in_place_between_layers_is_sparsified_again():
    model = dropit.to_dropit(Fork(modify_between=True), strategy="mink", gamma=0.75)
    x = torch.randn(2, 8, 16, 16)
    report = dropit.measure_cache(model, x)
    n = x.numel()
    assert report.total_bytes == 2 * (n // 4 * 4 + n // 8)  # two records: the values differ
    got = _weight_grads(model, x)
    want = _reference_grads(model, x, 0.75, scale_b=3.0)
    for name in want:
        torch.testing.assert_close(got[name], want[name])


def test_layers_with_different_gammas_keep_their_own_records():
    model = dropit.to_dropit(Fork(), strategy="mink", gamma=0.75, gamma_by_name={"b": 0.5})
    x = torch.randn(2, 8, 16, 16)
    n = x.numel()
    report = dropit.measure_cache(model, x)
    assert report.total_bytes == (n // 4 * 4 + n // 8) + (n // 2 * 4 + n // 8)


def test_a_record_is_shared_only_while_a_layer_holds_it():
    x = torch.randn(64, 64)
    spec = dropit.DropSpec(0.9, "sampled")
    first = dropit.sparsify(x, spec)
    assert dropit.sparsify(x, spec).values is first.values  # alive: shared
    values = weakref.ref(first.values)
    del first
    gc.collect()
    assert values() is None  # nothing in dropit keeps it alive
    again = dropit.sparsify(x, spec)
    assert torch.equal(dropit.expand(again), torch.where(dropit.STRATEGIES["sampled"](x.view(-1), 0.9).view_as(x), x, 0))


def test_resnet_shortcuts_share_their_block_input():
    model = dropit.to_dropit(torchvision.models.resnet18(num_classes=10), strategy="mink", gamma=0.9)
    seen = []  # holds the tensors themselves, so no id is reused while we compare
    with observe(lambda dense, record: seen.append((dense, record.values))):
        model(torch.randn(2, 3, 64, 64))
    inputs = []
    for dense, values in seen:
        for other in inputs:
            if other[0] is dense:
                other[1].append(values)
                break
        else:
            inputs.append((dense, [values]))
    twice = [values for _, values in inputs if len(values) == 2]
    assert len(twice) == 3  # layer2..4: conv1 and downsample.0 take the same tensor
    assert all(a is b for a, b in twice)  # and get the same record
    assert all(len(values) <= 2 for _, values in inputs)
