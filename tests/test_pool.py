"""The compact MaxPool2d companion: gradients equal nn.MaxPool2d's exactly, one byte per output kept."""
import copy

import pytest
import torch
import torch.nn as nn

import dropit

POOLS = [
    dict(kernel_size=3, stride=2, padding=1),  # the ImageNet ResNet stem
    dict(kernel_size=2),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1)),
    dict(kernel_size=3, stride=2, ceil_mode=True),
]


@pytest.mark.parametrize("options", POOLS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "unbatched"])
def test_gradient_equals_nn_maxpool_exactly(options, layout):
    plain = nn.MaxPool2d(**options)
    converted = dropit.to_dropit(nn.Sequential(copy.deepcopy(plain)), gamma=0.9)
    assert [fwd.kind for _, _, fwd in dropit.converted_modules(converted)] == ["maxpool"]
    x = torch.randn(2, 5, 13, 12)
    x[0, 0, :4, :4] = 1.0  # ties inside windows
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "unbatched":
        x = x[0]
    results = []
    for m in (plain, converted):
        leaf = x.clone().requires_grad_()
        out = m(leaf * 1.0)
        grad = torch.arange(out.numel(), dtype=out.dtype).view_as(out).sin()
        out.backward(grad)
        results.append((out.detach(), leaf.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


def test_keeps_one_byte_per_output():
    pool = dropit.to_dropit(nn.Sequential(nn.MaxPool2d(3, 2, 1)), gamma=0.9)
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    assert dropit.measure_cache(pool, x * 1.0).total_bytes == 4 * 8 * 8 * 8


def test_index_returning_pools_and_the_switch_are_respected():
    model = nn.Sequential(nn.MaxPool2d(2, return_indices=True), nn.MaxPool2d(2))
    assert [n for n, _, _ in dropit.converted_modules(dropit.to_dropit(copy.deepcopy(model)))] == ["1"]
    assert list(dropit.converted_modules(dropit.to_dropit(copy.deepcopy(model), compact_maxpool=False))) == []
