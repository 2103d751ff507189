"""The public conversion API: to_dropit / set_gamma / restore, and what stays unchanged."""
import copy
import io
import pickle

import pytest
import torch
import torch.nn as nn
import torchvision

import dropit
from dropit.sparsify import observe
from dropit.strategies import num_kept


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8 * 6 * 6, 5)

    def forward(self, x):
        return self.head(self.block(self.relu(self.conv(x))).flatten(1))


def _grads(model, x):
    model.zero_grad()
    model(x).square().sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _kept_counts(model, x):
    counts = []
    with observe(lambda dense, rec: counts.append(rec.values.numel())):
        model(x)
    return counts


def test_published_keyword_call_converts_conv_and_linear_in_place():
    model = Net()
    out = dropit.to_dropit(model, strategy="mink", gamma=0.9)
    assert out is model
    kinds = {name: fwd.kind for name, _, fwd in dropit.converted_modules(model)}
    assert kinds == {"conv": "conv", "block.0": "conv", "head": "linear", "relu": "relu", "block.1": "relu"}
    assert isinstance(model.conv, nn.Conv2d) and type(model.head) is nn.Linear


def test_default_strategy_is_sampled_and_it_selects_what_sampled_selects():
    model = dropit.to_dropit(Net(), gamma=0.9)
    assert {fwd.spec.strategy for _, _, fwd in dropit.converted_modules(model) if fwd.kind != "relu"} == {"sampled"}
    conv = dropit.to_dropit(nn.Conv2d(3, 8, 3), gamma=0.9)
    x = torch.randn(4, 3, 64, 64)  # more elements than the sample: not exact min-k
    kept = []
    with observe(lambda dense, record: kept.append(dropit.expand(record))):
        conv(x)
    want = dropit.STRATEGIES["sampled"](x.reshape(-1), 0.9).view_as(x)
    assert torch.equal(kept[0], torch.where(want, x, 0))
    assert not torch.equal(want, dropit.STRATEGIES["mink"](x.reshape(-1), 0.9).view_as(x))


def test_state_dict_keys_identical_and_checkpoints_load_both_ways():
    plain, converted = Net(), dropit.to_dropit(Net(), gamma=0.5)
    assert list(plain.state_dict()) == list(converted.state_dict())
    buf = io.BytesIO()
    torch.save(converted.state_dict(), buf)
    buf.seek(0)
    plain.load_state_dict(torch.load(buf))
    converted.load_state_dict(Net().state_dict())
    for (n1, p1), (n2, p2) in zip(plain.named_parameters(), converted.named_parameters()):
        assert n1 == n2


def test_eval_and_no_grad_compute_exactly_the_plain_output_and_keep_nothing_extra():
    plain = Net()
    converted = dropit.to_dropit(copy.deepcopy(plain), gamma=0.9)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(plain(x), converted(x))
    plain.eval(), converted.eval()
    assert torch.equal(plain(x), converted(x))
    xg = x.clone().requires_grad_()
    reports = []
    for model in (plain, converted):
        with dropit.CacheMeter(model) as meter:
            model(xg)
        reports.append(meter.report())
    assert reports[0].total_bytes > 0
    assert reports[1].total_bytes == reports[0].total_bytes
    assert reports[1].dense_bytes == 0  # nothing was sparsified in eval


def test_set_gamma_changes_kept_count_without_reconverting():
    model = dropit.to_dropit(nn.Linear(100, 3), strategy="mink", gamma=0.9)
    x = torch.randn(4, 100)
    assert _kept_counts(model, x) == [num_kept(400, 0.9)]
    dropit.set_gamma(model, 0.5)
    assert _kept_counts(model, x) == [num_kept(400, 0.5)]
    assert model.forward.spec.gamma == 0.5


def test_per_layer_gamma_and_filter():
    model = dropit.to_dropit(
        Net(),
        gamma=0.9,
        gamma_by_name={"block.*": 0.5},
        module_filter_fn=lambda m, name: name != "head",
    )
    rates = {name: fwd.spec.gamma for name, _, fwd in dropit.converted_modules(model) if fwd.kind != "relu"}
    assert rates == {"conv": 0.9, "block.0": 0.5}
    dropit.set_gamma(model, {"conv": 0.2})
    rates = {name: fwd.spec.gamma for name, _, fwd in dropit.converted_modules(model) if fwd.kind != "relu"}
    assert rates == {"conv": 0.2, "block.0": 0.5}


def test_restore_gives_plain_gradients_back():
    plain = Net()
    model = dropit.to_dropit(copy.deepcopy(plain), gamma=0.9)
    x = torch.randn(2, 3, 6, 6)
    assert not torch.allclose(_grads(model, x)["head.weight"], _grads(plain, x)["head.weight"])
    assert dropit.restore(model) is model
    assert list(dropit.converted_modules(model)) == []
    for name, g in _grads(model, x).items():
        torch.testing.assert_close(g, _grads(plain, x)[name], rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(strategy="topk"), "unknown DropIT strategy 'topk'; choose one of"),
        (dict(gamma=1.0), r"gamma must be in \[0, 1\)"),
        (dict(gamma=-0.1), r"gamma must be in \[0, 1\)"),
        (dict(gamma=float("nan")), r"gamma must be in \[0, 1\)"),
        (dict(gamma="high"), "gamma must be a number"),
        (dict(gamma_by_name={"conv": 2}), r"gamma_by_name\['conv'\] must be in"),
        (dict(value_dtype=torch.int8), "value_dtype must be one of"),
    ],
)
def test_bad_arguments_raise_and_leave_model_unconverted(kwargs, match):
    model = Net()
    with pytest.raises(ValueError, match=match):
        dropit.to_dropit(model, **kwargs)
    assert list(dropit.converted_modules(model)) == []


@pytest.mark.parametrize("call", [lambda m: dropit.to_dropit(m, 0.9), lambda m: dropit.to_dropit(m, strategy=0.5)])
def test_a_number_in_strategys_place_asks_whether_gamma_was_meant(call):
    model = Net()
    with pytest.raises(TypeError, match=r"did you mean gamma=0\.[95]\?"):
        call(model)
    assert list(dropit.converted_modules(model)) == []


def test_the_official_codes_positional_call_still_works():
    model = dropit.to_dropit(Net(), "mink", 0.7)  # to_dropit(model, args.strategy, args.gamma), as in chenjoya/dropit
    specs = {(fwd.spec.strategy, fwd.spec.gamma) for _, _, fwd in dropit.converted_modules(model)}
    assert specs == {("mink", 0.7)}


def test_gamma_is_checked_once_where_it_enters(monkeypatch):
    import sys

    from dropit.strategies import check_gamma

    checked = []

    def counting(gamma, where="gamma"):
        checked.append(where)
        return check_gamma(gamma, where)

    for module in ("dropit.sparsify", "dropit.convert"):  # the modules, not the functions of those names
        monkeypatch.setattr(sys.modules[module], "check_gamma", counting)
    model = dropit.to_dropit(Net(), gamma=0.9, gamma_by_name={"block.*": 0.5})
    assert len(list(dropit.converted_modules(model))) == 5
    assert checked == ["gamma", "gamma_by_name['block.*']"]  # not once per layer
    checked.clear()
    dropit.set_gamma(model, 0.3)
    assert checked == ["gamma"]


def test_double_conversion_and_bad_set_gamma_are_rejected():
    model = dropit.to_dropit(Net(), gamma=0.9)
    with pytest.raises(ValueError, match="already converted"):
        dropit.to_dropit(model)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropit.set_gamma(model, 1.5)
    assert all(fwd.spec.gamma == 0.9 for _, _, fwd in dropit.converted_modules(model))


def test_deepcopy_and_pickle_keep_the_conversion_on_the_copy():
    model = dropit.to_dropit(Net(), gamma=0.7)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        converted = list(dropit.converted_modules(clone))
        assert len(converted) == 5
        assert all(fwd.module is m for _, m, fwd in converted)
        x = torch.randn(2, 3, 6, 6)
        torch.testing.assert_close(_grads(clone, x), _grads(copy.deepcopy(clone), x))


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("attention", ["self", "cross"])
def test_multihead_attention_gamma_zero_equals_plain(batch_first, need_weights, attention):
    plain = nn.MultiheadAttention(16, 4, batch_first=batch_first)
    converted = dropit.to_dropit(copy.deepcopy(plain), gamma=0.0)
    assert [n for n, _, _ in dropit.converted_modules(converted)] == [""]  # out_proj is computed by the MHA
    shape = (2, 5, 16) if batch_first else (5, 2, 16)
    x = torch.randn(shape)
    kv = x if attention == "self" else torch.randn(shape[:-2] + (7,) + shape[-1:] if batch_first else (7, 2, 16))
    mask = torch.zeros(2, kv.shape[1] if batch_first else kv.shape[0], dtype=torch.bool)
    mask[1, -2:] = True
    results = []
    for m in (plain, converted):
        xi = x.clone().requires_grad_()
        kvi = xi if attention == "self" else kv
        out, w = m(xi, kvi, kvi, key_padding_mask=mask, need_weights=need_weights)
        out.square().sum().backward()
        results.append((out, w, xi.grad, {n: p.grad for n, p in m.named_parameters()}))
    (o1, w1, g1, p1), (o2, w2, g2, p2) = results
    torch.testing.assert_close(o1, o2)
    torch.testing.assert_close(g1, g2)
    if need_weights:
        torch.testing.assert_close(w1, w2)
    for name in p1:
        torch.testing.assert_close(p1[name], p2[name], msg=name)


def test_multihead_attention_projections_are_sparsified():
    mha = dropit.to_dropit(nn.MultiheadAttention(16, 4, batch_first=True), strategy="mink", gamma=0.9)
    x = torch.randn(2, 5, 16, requires_grad=True)
    counts = []
    with observe(lambda dense, rec: counts.append((dense.numel(), rec.values.numel()))):
        mha(x, x, x, need_weights=False)
    assert counts == [(160, num_kept(160, 0.9)), (160, num_kept(160, 0.9))]  # in-projection once, out-projection


def test_torchvision_resnet18_trains_a_step_converted():
    model = dropit.to_dropit(torchvision.models.resnet18(num_classes=10), gamma=0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,))
    before = model.fc.weight.detach().clone()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    assert not torch.equal(before, model.fc.weight)


def test_torchvision_vit_b_16_trains_a_step_converted():
    model = torchvision.models.vit_b_16(image_size=32, num_classes=10)
    nn.init.normal_(model.heads.head.weight)  # torchvision zero-initialises it: no gradient would flow
    dropit.to_dropit(model, gamma=0.9)
    kinds = [fwd.kind for _, _, fwd in dropit.converted_modules(model)]
    assert kinds.count("mha") == 12 and kinds.count("conv") == 1 and kinds.count("linear") == 12 * 2 + 1
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    nn.functional.cross_entropy(model(x), y).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    attn = model.encoder.layers[0].self_attention
    assert attn.in_proj_weight.grad.abs().sum() > 0 and attn.out_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_autocast_trains_with_finite_gradients_of_parameter_dtype(dtype):
    model = dropit.to_dropit(Net(), gamma=0.9)
    x = torch.randn(2, 3, 6, 6)
    with torch.autocast("cpu", dtype=dtype):
        out = model(x)
        assert out.dtype == dtype
        counts = []
        with observe(lambda dense, rec: counts.append(rec.values.dtype)):
            model(x)
        assert counts == [dtype, dtype, dtype]  # cached in the autocast dtype, as autograd would
    out.float().square().sum().backward()
    for p in model.parameters():
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
