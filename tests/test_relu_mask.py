"""The 1-bit ReLU companion: gradients equal nn.ReLU's bit for bit, and it frees the dense output."""
import copy
import math

import pytest
import torch
import torch.nn as nn
import torchvision

import dropit


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_masked_relu_gradient_is_bitwise_nn_relu(inplace, channels_last):
    x = torch.randn(4, 6, 5, 5)
    x[0, 0, 0, :3] = torch.tensor([0.0, -0.0, math.nan])
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    grad = torch.randn(4, 6, 5, 5)
    results = []
    for fn in (lambda t: torch.relu_(t) if inplace else torch.relu(t), lambda t: dropit.masked_relu(t, inplace)):
        leaf = x.clone().requires_grad_()
        out = fn(leaf * 1.0)  # a non-leaf, as in a network
        out.backward(grad)
        results.append((out.detach(), leaf.grad))
    assert torch.equal(results[0][0].nan_to_num(), results[1][0].nan_to_num())
    assert torch.equal(results[0][1], results[1][1])


def test_resnet18_with_inplace_relu_has_the_plain_gradients_at_gamma_zero():
    plain = torchvision.models.resnet18(num_classes=10)
    converted = dropit.to_dropit(copy.deepcopy(plain), gamma=0.0)
    assert sum(fwd.kind == "relu" for _, _, fwd in dropit.converted_modules(converted)) == 9
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for model in (plain, converted):
        model(x).square().sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name in grads[0]:
        assert torch.equal(grads[0][name], grads[1][name]), name


def test_relu_mask_keeps_one_bit_per_element():
    relu = dropit.to_dropit(nn.Sequential(nn.ReLU()), gamma=0.9)
    x = torch.randn(8, 16, 8, 8, requires_grad=True)
    report = dropit.measure_cache(relu, x * 1.0)
    assert report.total_bytes == x.numel() // 8
