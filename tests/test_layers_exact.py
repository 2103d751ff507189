"""Converted layers against dense autograd: exact at gamma=0, exact min-k gradients at gamma>0."""
import copy

import pytest
import torch
import torch.nn as nn

import dropit
from dropit.strategies import num_kept

LAYERS = {
    "linear2d": (lambda: nn.Linear(12, 7), (5, 12)),
    "linear3d": (lambda: nn.Linear(12, 7), (3, 4, 12)),
    "linear4d_nobias": (lambda: nn.Linear(12, 7, bias=False), (2, 3, 4, 12)),
    "conv1d": (lambda: nn.Conv1d(3, 5, 3, stride=2, padding=1), (2, 3, 17)),
    "conv1d_same_even": (lambda: nn.Conv1d(3, 4, 4, padding="same"), (2, 3, 11)),
    "conv2d": (lambda: nn.Conv2d(4, 6, 3, padding=1), (2, 4, 9, 9)),
    "conv2d_groups_dilation": (lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), (2, 4, 10, 10)),
    "conv2d_reflect": (lambda: nn.Conv2d(3, 5, 3, padding=1, padding_mode="reflect"), (2, 3, 8, 8)),
    "conv2d_circular_same": (lambda: nn.Conv2d(3, 5, 3, padding="same", padding_mode="circular"), (2, 3, 8, 8)),
    "conv2d_replicate_stride": (lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1, padding_mode="replicate"), (2, 3, 9, 9)),
    "conv2d_valid_nobias": (lambda: nn.Conv2d(3, 5, (3, 2), padding="valid", bias=False), (2, 3, 7, 8)),
    "conv3d": (lambda: nn.Conv3d(2, 3, 3, stride=(1, 2, 2), padding=1), (2, 2, 5, 6, 6)),
    "conv_transpose1d": (lambda: nn.ConvTranspose1d(3, 4, 3, stride=2), (2, 3, 7)),
    "conv_transpose2d": (lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), (2, 4, 5, 5)),
    "conv_transpose3d": (lambda: nn.ConvTranspose3d(2, 3, 2, stride=2), (1, 2, 3, 3, 3)),
}


def _run(model, x, grad):
    x = x.detach().clone().requires_grad_()
    out = model(x)
    out.backward(grad)
    return out.detach(), x.grad, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(a, b, exact_weights=True):
    out_a, gx_a, gp_a = a
    out_b, gx_b, gp_b = b
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)
    torch.testing.assert_close(gx_a, gx_b)
    assert gp_a.keys() == gp_b.keys()
    if exact_weights:
        for name in gp_a:
            torch.testing.assert_close(gp_a[name], gp_b[name], msg=name)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("nested", [False, True], ids=["root", "nested"])
def test_gamma_zero_equals_plain_layer(name, nested):
    make, shape = LAYERS[name]
    layer = make()
    plain = nn.Sequential(nn.Identity(), layer) if nested else layer
    converted = dropit.to_dropit(copy.deepcopy(plain), gamma=0.0)
    assert len(list(dropit.converted_modules(converted))) == 1
    x = torch.randn(shape)
    grad = torch.randn_like(plain(x))
    _assert_same(_run(plain, x, grad), _run(converted, x, grad))


def _mink_sparsified(x, gamma):
    """An independent min-k: zero the floor(gamma*n) smallest |x| by a full sort."""
    flat = x.detach().reshape(-1)
    order = flat.abs().argsort(descending=True, stable=True)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[order[: num_kept(flat.numel(), gamma)]] = True
    return (flat * keep).view_as(x)


def _cached_input(layer, x):
    """What the layer caches for grad_weight: the padded input where padding is explicit."""
    ref = copy.deepcopy(layer)
    pads = getattr(layer, "_reversed_padding_repeated_twice", None)
    asymmetric_same = layer.__dict__.get("padding") == "same" and pads[0::2] != pads[1::2]
    if getattr(layer, "padding_mode", "zeros") != "zeros" or asymmetric_same:
        mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
        ref.padding_mode, ref.padding = "zeros", (0,) * len(layer.kernel_size)
        return ref, nn.functional.pad(x, pads, mode=mode)
    return ref, x


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_mink_weight_gradient_uses_sparsified_input(name):
    gamma = 0.9
    make, shape = LAYERS[name]
    plain = make()
    converted = dropit.to_dropit(copy.deepcopy(plain), strategy="mink", gamma=gamma)
    x = torch.randn(shape)
    grad = torch.randn_like(plain(x))

    out_c, gx_c, gp_c = _run(converted, x, grad)
    out_p, gx_p, _ = _run(plain, x, grad)
    torch.testing.assert_close(out_c, out_p, rtol=0, atol=0)  # forward is exact
    torch.testing.assert_close(gx_c, gx_p)  # grad_input needs only the weight

    ref, cached = _cached_input(plain, x)
    if cached is x:
        x_sparse = _mink_sparsified(cached, gamma)
    else:  # padding copies values, and min-k among ties is any valid choice: check it is one
        x_sparse = dropit.expand(dropit.sparsify(cached, dropit.DropSpec(gamma, "mink")))
        kept = x_sparse.ne(0)
        assert int(kept.sum()) == num_kept(cached.numel(), gamma)
        assert cached[kept].abs().min() >= cached[~kept].abs().max()
    ref.zero_grad()
    ref(x_sparse).backward(grad)
    torch.testing.assert_close(gp_c["weight"], ref.weight.grad)
    assert not torch.allclose(gp_c["weight"], _run(plain, x, grad)[2]["weight"])
    if plain.bias is not None:  # the bias gradient needs no input: exact
        torch.testing.assert_close(gp_c["bias"], ref.bias.grad)


def test_frozen_weight_keeps_no_input_and_gives_exact_grad_input():
    plain = nn.Conv2d(3, 4, 3, padding=1)
    converted = dropit.to_dropit(copy.deepcopy(plain), gamma=0.9)
    for m in (plain, converted):
        m.weight.requires_grad_(False)
    x = torch.randn(2, 3, 6, 6)
    grad = torch.randn(2, 4, 6, 6)
    a, b = _run(plain, x, grad), _run(converted, x, grad)
    torch.testing.assert_close(a[1], b[1])
    torch.testing.assert_close(a[2]["bias"], b[2]["bias"])
    x = x.requires_grad_()
    assert dropit.measure_cache(converted, x).total_bytes == 0


def test_channels_last_matches_contiguous():
    conv = nn.Conv2d(8, 8, 3, padding=1)
    converted = dropit.to_dropit(copy.deepcopy(conv), gamma=0.7, strategy="mink")
    x = torch.randn(2, 8, 6, 6)
    grad = torch.randn(2, 8, 6, 6)
    a = _run(converted, x, grad)
    converted.zero_grad()
    xc = x.to(memory_format=torch.channels_last)
    b = _run(converted.to(memory_format=torch.channels_last), xc, grad.to(memory_format=torch.channels_last))
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    torch.testing.assert_close(a[2]["weight"], b[2]["weight"])
