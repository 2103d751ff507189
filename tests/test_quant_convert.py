"""to_dropit(quantize=...): what it converts, what it keeps (bytes by hand), bad values, set_gamma/restore, compile."""
import copy
import math

import pytest
import torch
import torch.nn as nn
import torchvision

import dropit
from dropit.kinds import KINDS
from dropit.quant import GROUP_SIZE


def _small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())


def _small_vit():
    torch.manual_seed(0)
    m = torchvision.models.VisionTransformer(image_size=16, patch_size=8, num_layers=2, num_heads=2,
                                             hidden_dim=32, mlp_dim=64, num_classes=5)
    nn.init.normal_(m.heads.head.weight, std=0.02)
    return m


def _grads(model, x):
    model.zero_grad()
    out = model(x)
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def quantized_bytes(n: int, bits: int) -> int:
    """Codes and fp32 scales of n elements, by hand."""
    codes = n if bits == 8 else math.ceil(n / 2)
    return codes + 4 * math.ceil(n / GROUP_SIZE[bits])


def test_quantize_none_changes_nothing():
    for build, x in ((_small_cnn, torch.randn(2, 3, 10, 10)), (_small_vit, torch.randn(2, 3, 16, 16))):
        default = dropit.to_dropit(build(), gamma=0.9)
        explicit = dropit.to_dropit(build(), gamma=0.9, quantize=None)
        kinds = [fwd.kind for _, _, fwd in dropit.converted_modules(explicit)]
        assert kinds == [fwd.kind for _, _, fwd in dropit.converted_modules(default)]
        assert not set(kinds) & {k.name for k in KINDS if k.option == "quantize"}
        out_d, g_d = _grads(default, x)
        out_e, g_e = _grads(explicit, x)
        torch.testing.assert_close(out_e, out_d, rtol=0, atol=0)
        for n in g_d:
            torch.testing.assert_close(g_e[n], g_d[n], rtol=0, atol=0)
        storage = dropit.measure_cache(explicit, x).by_storage()
        assert not {"int8", "int4", "fewbit4"} & set(storage)


@pytest.mark.parametrize("bad", ["int3", "INT8", 8, True, "fp8"])
def test_bad_quantize_level_is_rejected_before_anything_changes(bad):
    model = _small_cnn()
    with pytest.raises(ValueError, match=r"'int8', 'int4'"):
        dropit.to_dropit(model, quantize=bad)
    assert not list(dropit.converted_modules(model))


@pytest.mark.parametrize("level", ["int8", "int4"])
def test_converts_norms_activations_and_attention_forward_exact(level):
    plain = _small_vit().train()
    dropit_only = dropit.to_dropit(copy.deepcopy(plain), gamma=0.9)
    q = dropit.to_dropit(copy.deepcopy(plain), gamma=0.9, quantize=level)
    kinds = {fwd.kind for _, _, fwd in dropit.converted_modules(q)}
    assert {"layernorm", "gelu", "mha", "linear", "conv"} <= kinds
    x = torch.randn(2, 3, 16, 16)
    out_d, _ = _grads(dropit_only, x)
    out_q, _ = _grads(q, x)
    torch.testing.assert_close(out_q, out_d, rtol=0, atol=0)  # the companions change no forward bit
    torch.testing.assert_close(out_q, _grads(plain, x)[0])  # DropIT's attention: equal up to rounding
    report = dropit.measure_cache(q, x)
    storage = report.by_storage()
    expected = {"int8": {"int8"}, "int4": {"int4", "fewbit4"}}[level]
    assert expected <= set(storage)
    # what stays plain: statistics, logsumexp, the classifier's and other small inputs
    assert storage.get("plain", 0) < 0.1 * report.total_bytes


@pytest.mark.parametrize("level,bits", [("int8", 8), ("int4", 4)])
def test_cnn_bytes_by_hand(level, bits):
    model = dropit.to_dropit(_small_cnn(), gamma=0.9, quantize=level)
    report = dropit.measure_cache(model, torch.randn(2, 3, 10, 10))
    layers = {layer.name: layer for layer in report.layers}
    n = 2 * 8 * 10 * 10  # each BatchNorm's input
    for name in ("1", "4"):
        bn = layers[name]
        assert bn.storage == {level: quantized_bytes(n, bits), "plain": 2 * 8 * 4}  # + batch mean and 1/std
        assert bn.dense_bytes == n * 4
        assert bn.bytes == quantized_bytes(n, bits) + 64


@pytest.mark.parametrize("level,bits", [("int8", 8), ("int4", 4)])
def test_mlp_and_attention_bytes_by_hand(level, bits):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16), nn.LayerNorm(16))
    model = dropit.to_dropit(mlp, gamma=0.9, quantize=level)
    layers = {layer.name: layer for layer in dropit.measure_cache(model, torch.randn(3, 5, 16)).layers}
    gelu = 3 * 5 * 64
    assert layers["1"].storage == ({"int8": quantized_bytes(gelu, 8)} if bits == 8 else {"fewbit4": gelu // 2})
    assert layers["3"].storage == {level: quantized_bytes(3 * 5 * 16, bits), "plain": 2 * 3 * 5 * 4}  # + mean, 1/std

    mha = dropit.to_dropit(nn.MultiheadAttention(48, 4, batch_first=True), gamma=0.9, quantize=level)
    x = torch.randn(3, 10, 48)
    report = dropit.measure_cache(mha, x, x, x, need_weights=False)
    packed_qkv, out = 3 * 10 * 3 * 48, 3 * 10 * 48  # q, k, v stored once, as the in-projection's output
    assert report.by_storage()[level] == quantized_bytes(packed_qkv, bits) + quantized_bytes(out, bits)


def test_module_filter_keeps_chosen_modules_exact():
    model = dropit.to_dropit(_small_cnn(), quantize="int8", module_filter_fn=lambda m, name: name != "1")
    kinds = {name: fwd.kind for name, _, fwd in dropit.converted_modules(model)}
    assert "1" not in kinds and kinds["4"] == "batchnorm"


def test_set_gamma_and_restore_cover_quantized_modules():
    plain = _small_cnn()
    model = dropit.to_dropit(copy.deepcopy(plain), gamma=0.9, quantize="int8")
    dropit.set_gamma(model, 0.5)
    assert all(fwd.spec.gamma == 0.5 for _, _, fwd in dropit.converted_modules(model))
    x = torch.randn(2, 3, 10, 10)
    assert "int8" in dropit.measure_cache(model, x).by_storage()  # still quantized
    assert "quantize='int8'" in repr(dict((n, f) for n, _, f in dropit.converted_modules(model))["1"])
    dropit.restore(model)
    assert not list(dropit.converted_modules(model))
    assert model.state_dict().keys() == plain.state_dict().keys()
    out_p, g_p = _grads(plain, x)
    out_r, g_r = _grads(model, x)
    torch.testing.assert_close(out_r, out_p, rtol=0, atol=0)
    for n in g_p:
        torch.testing.assert_close(g_r[n], g_p[n], rtol=0, atol=0)


def test_eval_and_no_grad_run_the_plain_modules():
    model = dropit.to_dropit(_small_vit(), quantize="int8")
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    with dropit.CacheMeter(model.eval()) as meter:
        model(x)
    assert not {"int8", "int4", "fewbit4"} & set(meter.report().by_storage())
    with torch.no_grad(), dropit.CacheMeter(model.train()) as meter:
        model(x)
    assert meter.report().total_bytes == 0


def _small_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.RMSNorm(32), nn.SiLU(), nn.Linear(32, 16), nn.BatchNorm1d(16),
                         nn.GELU(approximate="tanh"), nn.Linear(16, 4))


@pytest.mark.slow
@pytest.mark.parametrize("build,shape,level", [(_small_vit, (2, 3, 16, 16), "int8"), (_small_vit, (2, 3, 16, 16), "int4"),
                                               (_small_mlp, (6, 12), "int4")])
def test_compiles_fullgraph_with_eager_gradients(build, shape, level):
    plain = build()
    eager = dropit.to_dropit(copy.deepcopy(plain), gamma=0.5, quantize=level)
    compiled = dropit.to_dropit(copy.deepcopy(plain), gamma=0.5, quantize=level)
    x = torch.randn(shape)
    out_e, g_e = _grads(eager, x)
    out_c, g_c = _grads(torch.compile(compiled, fullgraph=True), x)
    g_c = {n.removeprefix("_orig_mod."): g for n, g in g_c.items()}
    torch.testing.assert_close(out_c, out_e, rtol=1e-5, atol=1e-5)
    for n in g_e:
        assert float((g_c[n] - g_e[n]).norm() / g_e[n].norm().clamp_min(1e-12)) < 1e-3, n
