"""The quantized companions, module by module: exact forward, gradients within a bound set by the quantization step.

Every bound here follows from |x_hat - x| <= step / 2 per element (the step
of an element is its group's scale), pushed through the op's own backward
formula; tests of the kernels check that premise.
"""
import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import dropit
from dropit import kernels, quant
from dropit.kernels import quant_reference as ref

LEVELS = ["int8", "int4"]

MODULES = {
    "bn1d": (lambda: nn.BatchNorm1d(6), (16, 6)),
    "bn1d_seq": (lambda: nn.BatchNorm1d(6), (4, 6, 9)),
    "bn2d": (lambda: nn.BatchNorm2d(6), (4, 6, 5, 7)),
    "bn2d_cumulative_noaffine": (lambda: nn.BatchNorm2d(6, momentum=None, affine=False), (4, 6, 5, 7)),
    "bn2d_no_running_stats": (lambda: nn.BatchNorm2d(6, track_running_stats=False), (4, 6, 5, 7)),
    "bn3d": (lambda: nn.BatchNorm3d(4), (2, 4, 3, 5, 6)),
    "ln": (lambda: nn.LayerNorm(40), (4, 7, 40)),
    "ln_2d_shape": (lambda: nn.LayerNorm((5, 12)), (3, 5, 12)),
    "ln_no_affine": (lambda: nn.LayerNorm(40, elementwise_affine=False), (4, 7, 40)),
    "rmsnorm": (lambda: nn.RMSNorm(40), (4, 7, 40)),
    "gelu": (lambda: nn.GELU(), (4, 7, 40)),
    "gelu_tanh": (lambda: nn.GELU(approximate="tanh"), (4, 7, 40)),
    "silu": (lambda: nn.SiLU(), (4, 7, 40)),
}


def _init(m: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(0.5, 1.5)
    return m


def _input(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 2 + 0.5


def _run(m, x, grad):
    x = x.detach().clone().requires_grad_()
    out = m(x)
    out.backward(grad)
    return out.detach(), x.grad, {n: p.grad.clone() for n, p in m.named_parameters()}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", sorted(MODULES))
def test_forward_and_buffers_equal_plain(name, level):
    make, shape = MODULES[name]
    plain = _init(make()).train()
    q = dropit.to_dropit(copy.deepcopy(plain), quantize=level)
    assert [fwd.kind for _, _, fwd in dropit.converted_modules(q)] == [dropit.kinds.entry_of(plain).name]
    x = _input(shape)
    for step in range(2):  # twice: running statistics and num_batches_tracked move alike
        out_p, _, _ = _run(plain, x + step, torch.ones(shape))
        out_q, _, _ = _run(q, x + step, torch.ones(shape))
        torch.testing.assert_close(out_q, out_p, rtol=0, atol=0)
    for (n, a), (_, b) in zip(plain.named_buffers(), q.named_buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=n)


def _steps(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-element quantization step (the group's scale), laid out like x."""
    flat, perm = dropit.record.memory_order(x)
    group = quant.GROUP_SIZE[bits]
    _, scales = kernels.quantize(flat, bits, group)
    steps = scales.repeat_interleave(group)[: flat.numel()]
    return dropit.record.from_memory_order(steps, x.shape, perm)


def _normalization_bound(g, xhat, d, factor, dims):
    """Bound on |grad_in(x_hat) - grad_in(x)| for grad_in = factor * (g - mean g - xhat * mean(g * xhat)),
    the backward of BatchNorm (dims: all but channels) and LayerNorm (dims: the normalized ones),
    with exact statistics and |xhat_hat - xhat| <= d elementwise."""
    mean = lambda t: t.mean(dim=dims, keepdim=True)  # noqa: E731
    return factor.abs() * (d * mean(g * xhat).abs() + d * mean(g.abs() * d) + xhat.abs() * mean(g.abs() * d))


def _check(actual, exact, bound, what):
    excess = (actual - exact).abs() - bound
    slack = 1e-5 * exact.abs().max() + 1e-6  # float rounding of two backward runs
    assert excess.max() <= slack, f"{what}: exceeds its bound by {excess.max():.3g}"


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", ["bn1d", "bn2d", "bn3d", "bn2d_channels_last"])
def test_batchnorm_gradients_within_the_step_bound(name, level):
    make, shape = MODULES.get(name, MODULES["bn2d"])
    plain = _init(make()).train()
    q = dropit.to_dropit(copy.deepcopy(plain), quantize=level)
    x = _input(shape)
    if name.endswith("channels_last"):
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(shape)
    _, gx_p, gp_p = _run(plain, x, grad)
    _, gx_q, gp_q = _run(q, x, grad)
    dims = [0] + list(range(2, x.dim()))
    view = [1, -1] + [1] * (x.dim() - 2)
    mean, var = x.mean(dims, keepdim=True), x.var(dims, unbiased=False, keepdim=True)
    invstd = (var + plain.eps).rsqrt()
    xhat = (x - mean) * invstd
    d = invstd * _steps(x, quant.bits_of(level)) / 2
    bound = _normalization_bound(grad, xhat, d, plain.weight.detach().view(view) * invstd, dims)
    _check(gx_q, gx_p, bound, "grad_input")
    _check(gp_q["weight"], gp_p["weight"], (grad.abs() * d).sum(dims), "grad_weight")
    torch.testing.assert_close(gp_q["bias"], gp_p["bias"])  # needs no input


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", ["ln", "ln_2d_shape"])
def test_layernorm_gradients_within_the_step_bound(name, level):
    make, shape = MODULES[name]
    plain = _init(make()).train()
    q = dropit.to_dropit(copy.deepcopy(plain), quantize=level)
    x, grad = _input(shape), torch.randn(shape)
    _, gx_p, gp_p = _run(plain, x, grad)
    _, gx_q, gp_q = _run(q, x, grad)
    dims = list(range(x.dim() - len(plain.normalized_shape), x.dim()))
    mean, var = x.mean(dims, keepdim=True), x.var(dims, unbiased=False, keepdim=True)
    rstd = (var + plain.eps).rsqrt()
    xhat = (x - mean) * rstd
    d = rstd * _steps(x, quant.bits_of(level)) / 2
    gw = grad * plain.weight.detach()
    _check(gx_q, gx_p, _normalization_bound(gw, xhat, d, rstd, dims), "grad_input")
    lead = list(range(x.dim() - len(plain.normalized_shape)))
    _check(gp_q["weight"], gp_p["weight"], (grad.abs() * d).sum(lead), "grad_weight")
    torch.testing.assert_close(gp_q["bias"], gp_p["bias"])


_SECOND_DERIVATIVE_MAX = {"gelu": 2 / math.sqrt(2 * math.pi), "gelu_tanh": 0.81, "silu": 0.5}  # max |f''|


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "silu"])
def test_activation_int8_gradients_within_the_step_bound(name):
    make, shape = MODULES[name]
    plain = make()
    q = dropit.to_dropit(copy.deepcopy(plain), quantize="int8")
    x, grad = _input(shape), torch.randn(shape)
    _, gx_p, _ = _run(plain, x, grad)
    _, gx_q, _ = _run(q, x, grad)
    _check(gx_q, gx_p, grad.abs() * _SECOND_DERIVATIVE_MAX[name] * _steps(x, 8) / 2, "grad_input")


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "silu"])
def test_activation_int4_is_the_binned_derivative(name):
    make, shape = MODULES[name]
    plain = make()
    q = dropit.to_dropit(copy.deepcopy(plain), quantize="int4")
    x, grad = _input(shape), torch.randn(shape)
    _, gx_p, _ = _run(plain, x, grad)
    _, gx_q, _ = _run(q, x, grad)
    function = dropit.activations.function_of(plain)
    boundaries, levels = quant.fewbit_tables(function)
    torch.testing.assert_close(gx_q, grad * levels[torch.bucketize(x, boundaries)], rtol=0, atol=0)
    _check(gx_q, gx_p, grad.abs() * 0.12, "grad_input")  # the tables' largest deviation (test_quant_kernels)


@pytest.mark.parametrize("level", LEVELS)
def test_rmsnorm_gradients_are_those_at_the_dequantized_input(level):
    make, shape = MODULES["rmsnorm"]
    plain = _init(make()).train()
    q = dropit.to_dropit(copy.deepcopy(plain), quantize=level)
    x, grad = _input(shape), torch.randn(shape)
    bits = quant.bits_of(level)
    codes, scales = ref.quantize(x.flatten(), bits, quant.GROUP_SIZE[bits])
    x_hat = ref.dequantize(codes, scales, bits, quant.GROUP_SIZE[bits], x.numel(), x.dtype).view(shape)
    _, gx_q, gp_q = _run(q, x, grad)
    # backward recomputes the norm from x_hat: the plain module's gradients there
    x_hat = x_hat.requires_grad_()
    plain(x_hat).backward(grad)
    torch.testing.assert_close(gx_q, x_hat.grad)
    torch.testing.assert_close(gp_q["weight"], plain.weight.grad)
    _, gx_p, _ = _run(copy.deepcopy(plain), x, grad)
    assert (gx_q - gx_p).norm() / gx_p.norm() < (0.01 if bits == 8 else 0.15)


def _mha(batch_first=True, embed=48, heads=4):
    torch.manual_seed(0)
    return nn.MultiheadAttention(embed, heads, batch_first=batch_first)


def _attention_inputs(kind, batch_first=True):
    x = torch.randn(3, 10, 48) if batch_first else torch.randn(10, 3, 48)
    if kind == "self":
        return x, x, x
    kv = torch.randn(3, 7, 48) if batch_first else torch.randn(7, 3, 48)
    return (x, kv, kv) if kind == "cross" else (x, kv, torch.randn_like(kv))


def _mha_run(m, q, k, v, grad, **kwargs):
    leaves = {}
    for name, t in (("q", q), ("k", k), ("v", v)):
        if id(t) not in leaves:
            leaves[id(t)] = t.detach().clone().requires_grad_()
    qq, kk, vv = (leaves[id(t)] for t in (q, k, v))
    out, _ = m(qq, kk, vv, need_weights=False, **kwargs)
    out.backward(grad)
    return out.detach(), [t.grad for t in leaves.values()], {n: p.grad.clone() for n, p in m.named_parameters()}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kind", ["self", "cross", "separate"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_forward_exact_and_gradients_close(kind, batch_first, level):
    plain = _mha(batch_first)
    dropit_only = dropit.to_dropit(copy.deepcopy(plain), gamma=0.9)
    q_model = dropit.to_dropit(copy.deepcopy(plain), gamma=0.9, quantize=level)
    q, k, v = _attention_inputs(kind, batch_first)
    grad = torch.randn(q.shape)
    out_d, gin_d, gp_d = _mha_run(dropit_only, q, k, v, grad)
    out_q, gin_q, gp_q = _mha_run(q_model, q, k, v, grad)
    torch.testing.assert_close(out_q, out_d, rtol=0, atol=0)
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    bound = 0.02 if level == "int8" else 0.25  # measured 0.005 and 0.07 (benchmarks/quant_choices.py)
    for a, b in zip(gin_q, gin_d):
        assert rel(a, b) < bound
    assert rel(gp_q["in_proj_weight"], gp_d["in_proj_weight"]) < bound
    report = dropit.measure_cache(q_model, q, k, v, need_weights=False)
    assert report.by_storage().get(level, 0) > 0  # the fused attention's tensors are quantized


@pytest.mark.parametrize("level", LEVELS)
def test_attention_with_masks(level):
    plain = _mha()
    dropit_only = dropit.to_dropit(copy.deepcopy(plain), gamma=0.9)
    q_model = dropit.to_dropit(copy.deepcopy(plain), gamma=0.9, quantize=level)
    q, k, v = _attention_inputs("cross")
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[0, 5:] = True
    causal_like = torch.triu(torch.full((10, 7), -1e4), 1)
    grad = torch.randn(q.shape)
    kwargs = dict(key_padding_mask=padding, attn_mask=causal_like)
    out_d, gin_d, gp_d = _mha_run(dropit_only, q, k, v, grad, **kwargs)
    out_q, gin_q, gp_q = _mha_run(q_model, q, k, v, grad, **kwargs)
    torch.testing.assert_close(out_q, out_d, rtol=0, atol=0)
    bound = 0.02 if level == "int8" else 0.25
    assert float((gp_q["in_proj_weight"] - gp_d["in_proj_weight"]).norm() / gp_d["in_proj_weight"].norm()) < bound
    report = dropit.measure_cache(q_model, q, k, v, need_weights=False, **kwargs)
    assert report.by_storage().get(level, 0) > 0


def test_attention_boolean_mask_like_sdpa():
    q, k, v = (torch.randn(2, 3, 11, 16, requires_grad=True) for _ in range(3))
    mask = torch.rand(11, 11) > 0.3
    mask.fill_diagonal_(True)
    torch.testing.assert_close(dropit.sdpa.attention(q, k, v, mask, bits=8),
                               F.scaled_dot_product_attention(q, k, v, mask), rtol=0, atol=0)


def test_attention_gradients_are_the_kernels_at_the_dequantized_tensors():
    q, k, v = (torch.randn(2, 3, 11, 16, requires_grad=True) for _ in range(3))
    out = dropit.sdpa.attention(q, k, v, bits=8)
    grad = torch.randn_like(out)
    out.backward(grad)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), rtol=0, atol=0)
    exact_out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q.detach(), k.detach(), v.detach())

    def deq(t):
        codes, scales = ref.quantize(t.detach().flatten(), 8, quant.GROUP_SIZE[8])
        return ref.dequantize(codes, scales, 8, quant.GROUP_SIZE[8], t.numel(), t.dtype).view(t.shape)

    expected = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad, deq(q), deq(k), deq(v), deq(exact_out), lse, 0.0, False)
    for got, want in zip((q.grad, k.grad, v.grad), expected):
        torch.testing.assert_close(got, want)


def test_attention_falls_back_to_plain_sdpa_with_dropout():
    m = dropit.to_dropit(nn.MultiheadAttention(48, 4, dropout=0.5, batch_first=True), quantize="int8")
    x = torch.randn(2, 5, 48)
    report = dropit.measure_cache(m, x, x, x, need_weights=False)
    assert "int8" not in report.by_storage()


@pytest.mark.parametrize("level", LEVELS)
def test_channels_last_is_not_copied(level):
    bn = dropit.to_dropit(nn.BatchNorm2d(8), quantize=level)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = bn(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_inplace_silu_matches_plain():
    plain = nn.Sequential(nn.Linear(10, 10), nn.SiLU(inplace=True), nn.Linear(10, 3))
    q = dropit.to_dropit(copy.deepcopy(plain), gamma=0.0, quantize="int8")
    x = torch.randn(6, 10)
    out_p, gx_p, gp_p = _run(plain, x, torch.ones(6, 3))
    out_q, gx_q, gp_q = _run(q, x, torch.ones(6, 3))
    torch.testing.assert_close(out_q, out_p, rtol=0, atol=0)
    torch.testing.assert_close(gx_q, gx_p, rtol=0.02, atol=1e-3)


def test_batchnorm_called_twice_in_one_graph():
    plain = _init(nn.BatchNorm2d(4))
    q = dropit.to_dropit(copy.deepcopy(plain), quantize="int8")
    x = torch.randn(3, 4, 5, 5)
    out_p, gx_p, _ = _run(nn.Sequential(plain, plain), x, torch.ones(3, 4, 5, 5))
    out_q, gx_q, _ = _run(nn.Sequential(q, q), x, torch.ones(3, 4, 5, 5))
    torch.testing.assert_close(out_q, out_p, rtol=0, atol=0)
    torch.testing.assert_close(gx_q, gx_p, rtol=0.05, atol=1e-4)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", ["bn2d", "ln", "rmsnorm", "gelu", "gelu_tanh", "silu"])
def test_nonfinite_inputs_reach_the_gradients_as_without_quantization(name, bad, level):
    make, shape = MODULES[name]
    plain = _init(make()).train()
    q = dropit.to_dropit(copy.deepcopy(plain), quantize=level)
    x = _input(shape)
    x.view(-1)[[3, 50]] = bad
    grad = torch.randn(shape)
    out_p, gx_p, gp_p = _run(plain, x, grad)
    out_q, gx_q, gp_q = _run(q, x, grad)
    torch.testing.assert_close(out_q, out_p, rtol=0, atol=0, equal_nan=True)
    assert gx_p.isnan().any()  # the premise: PyTorch's own backward gives NaN here
    # NaN gives the same NaN as without quantization; +-Inf is stored as NaN, so where
    # the backward recomputes from it (RMSNorm's 1/rms) NaN may cover more than PyTorch's own
    same = (lambda a, b: torch.equal(a, b)) if math.isnan(bad) or name != "rmsnorm" else (lambda a, b: bool((a | ~b).all()))
    assert same(gx_q.isnan(), gx_p.isnan())
    for n in gp_p:
        assert same(gp_q[n].isnan(), gp_p[n].isnan()), n


@pytest.mark.parametrize("level", LEVELS)
def test_nonfinite_attention_inputs_reach_the_gradients(level):
    q, k, v = (torch.randn(2, 3, 11, 16) for _ in range(3))
    q[0, 1, 4, 2] = math.nan
    grads = []
    for fn in (F.scaled_dot_product_attention, lambda *t: dropit.sdpa.attention(*t, bits=quant.bits_of(level))):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = fn(*leaves)
        out.backward(torch.ones_like(out))
        grads.append((out.detach(), [t.grad for t in leaves]))
    (out_p, g_p), (out_q, g_q) = grads
    torch.testing.assert_close(out_q, out_p, rtol=0, atol=0, equal_nan=True)
    for a, b in zip(g_q, g_p):
        assert torch.equal(a.isnan(), b.isnan())


def _grads_under(dtype, models, x, r):
    outs, grads = [], []
    for m in models:
        m.zero_grad()
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = m(x)
        (out.float() * r).sum().backward()  # a loss whose gradient through the norms does not cancel
        outs.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    return outs, grads


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("level", LEVELS)
def test_autocast(dtype, level):
    """Under autocast: the plain output bit for bit, gradients of the autocast dtypes, and no
    more gradient error than the same companions add in fp32."""
    torch.manual_seed(0)
    plain = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(2),
        nn.Linear(36, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 32), nn.SiLU(), nn.RMSNorm(32),
    ).train()
    q = dropit.to_dropit(copy.deepcopy(plain), gamma=0.0, quantize=level)
    x, r = torch.randn(4, 3, 6, 6), torch.randn(4, 8, 32)
    (out_p, out_q), (gp_p, gp_q) = _grads_under(dtype, (plain, q), x, r)
    _, (gf_p, gf_q) = _grads_under(None, (plain, q), x, r)
    assert out_q.dtype == out_p.dtype == dtype
    torch.testing.assert_close(out_q, out_p, rtol=0, atol=0)
    rel = lambda a, b: float((a.float() - b.float()).norm() / b.float().norm())  # noqa: E731
    for n in gp_p:
        assert gp_q[n].dtype == gp_p[n].dtype
        assert rel(gp_q[n], gp_p[n]) <= 2 * rel(gf_q[n], gf_p[n]) + 0.02, n
