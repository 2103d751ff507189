"""Hugging Face's own GELU, SiLU and RMSNorm classes under ``quantize=``: recognised by structure and
behaviour (look-alikes left alone), forward bit for bit, gradients within the quantization step's bound,
and the GPT-2 / LLaMA models keeping less than DropIT alone."""
import copy

import pytest
import torch
import torch.nn as nn

import dropit
from dropit import hf_modules, quant
from dropit.kernels import quant_reference as ref
from dropit.kinds import entry_of

from test_quant_modules import _SECOND_DERIVATIVE_MAX, _check, _init, _input, _run, _steps

transformers = pytest.importorskip("transformers")
from transformers import activations as hf_act  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRMSNorm  # noqa: E402


def kind_of(module):
    """The name of the kind to_dropit converts ``module`` as, or None."""
    entry = entry_of(module)
    return entry.name if entry is not None else None


ACTIVATIONS = {  # class name -> (constructor, the torch module it computes)
    "NewGELUActivation": (hf_act.NewGELUActivation, "gelu_tanh"),
    "FastGELUActivation": (hf_act.FastGELUActivation, "gelu_tanh"),
    "GELUActivation": (hf_act.GELUActivation, "gelu"),
    "SiLUActivation": (hf_act.SiLUActivation, "silu"),
}
SHAPE = (4, 7, 40)


def test_recognised_by_structure_and_behaviour():
    assert kind_of(hf_act.NewGELUActivation()) == "gelu"
    assert kind_of(hf_act.GELUActivation(use_gelu_python=True)) == "gelu"  # erf written out: same function
    assert kind_of(hf_act.SiLUActivation()) == "silu"
    assert kind_of(LlamaRMSNorm(16)) == "rmsnorm"
    assert kind_of(hf_act.QuickGELUActivation()) is None  # x * sigmoid(1.702 x): not a GELU we differentiate

    class NewGELUActivation(nn.Module):  # a look-alike by name that computes something else
        def forward(self, x):
            return torch.relu(x)

    class GemmaLikeRMSNorm(nn.Module):  # scales by 1 + weight
        def __init__(self):
            super().__init__()
            self.weight, self.variance_epsilon = nn.Parameter(torch.zeros(16)), 1e-6

        def forward(self, x):
            return (1 + self.weight) * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)

    assert kind_of(NewGELUActivation()) is None and kind_of(GemmaLikeRMSNorm()) is None
    model = nn.Sequential(NewGELUActivation(), GemmaLikeRMSNorm())
    dropit.to_dropit(model, quantize="int8")
    assert list(dropit.converted_modules(model)) == []


def test_quantize_none_leaves_them_alone():
    model = nn.Sequential(hf_act.NewGELUActivation(), LlamaRMSNorm(40), hf_act.SiLUActivation())
    dropit.to_dropit(model, gamma=0.9)
    assert list(dropit.converted_modules(model)) == []


@pytest.mark.parametrize("level", ["int8", "int4"])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_forward_exact_and_gradient_bounded(name, level):
    make, function = ACTIVATIONS[name]
    plain = make()
    q = dropit.to_dropit(nn.Sequential(copy.deepcopy(plain)), quantize=level)
    x, grad = _input(SHAPE), torch.randn(SHAPE)
    out_p, gx_p, _ = _run(plain, x, grad)
    out_q, gx_q, _ = _run(q, x, grad)
    torch.testing.assert_close(out_q, out_p, rtol=0, atol=0)  # the module's own forward ran
    if level == "int8":
        _check(gx_q, gx_p, grad.abs() * _SECOND_DERIVATIVE_MAX[function] * _steps(x, 8) / 2, "grad_input")
    else:
        boundaries, levels = quant.fewbit_tables(hf_modules.hf_function(plain))
        torch.testing.assert_close(gx_q, grad * levels[torch.bucketize(x, boundaries)], rtol=0, atol=0)
        _check(gx_q, gx_p, grad.abs() * 0.12, "grad_input")


@pytest.mark.parametrize("level", ["int8", "int4"])
def test_llama_rmsnorm_forward_exact_and_gradients_at_the_dequantized_input(level):
    plain = _init(LlamaRMSNorm(40, eps=1e-5)).train()
    q = dropit.to_dropit(nn.Sequential(copy.deepcopy(plain)), quantize=level)
    x, grad = _input(SHAPE), torch.randn(SHAPE)
    out_p, gx_p, _ = _run(plain, x, grad)
    out_q, gx_q, gp_q = _run(q, x, grad)
    torch.testing.assert_close(out_q, out_p, rtol=0, atol=0)
    bits = quant.bits_of(level)
    codes, scales = ref.quantize(x.flatten(), bits, quant.GROUP_SIZE[bits])
    x_hat = ref.dequantize(codes, scales, bits, quant.GROUP_SIZE[bits], x.numel(), x.dtype).view(SHAPE)
    x_hat.requires_grad_()
    plain.zero_grad(set_to_none=True)
    plain(x_hat).backward(grad)  # the plain module's own gradients at the dequantized input
    torch.testing.assert_close(gx_q, x_hat.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gp_q["0.weight"], plain.weight.grad, rtol=1e-5, atol=1e-5)
    assert (gx_q - gx_p).norm() / gx_p.norm() < (0.01 if bits == 8 else 0.15)


def test_llama_rmsnorm_under_bf16_autocast_matches_plain_forward():
    plain = _init(LlamaRMSNorm(40)).train()
    q = dropit.to_dropit(nn.Sequential(copy.deepcopy(plain)), quantize="int8")
    x = _input(SHAPE).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_p, gx_p, _ = _run(plain, x, torch.ones(SHAPE))
        out_q, gx_q, _ = _run(q, x, torch.ones(SHAPE))
    assert out_q.dtype == out_p.dtype and gx_q.dtype == gx_p.dtype == torch.bfloat16
    torch.testing.assert_close(out_q, out_p, rtol=0, atol=0)
    assert (gx_q.float() - gx_p.float()).norm() / gx_p.float().norm() < 0.05


@pytest.mark.parametrize("name, converted", [("gpt2", {"gelu", "layernorm"}), ("llama", {"rmsnorm", "gated_mlp"})])  # its SiLU: inside the gated product
def test_hf_models_keep_less_than_dropit_alone(name, converted):
    from dropit.lab.models import zoo

    cases = {q: zoo.build(name, "small") for q in (None, "int8")}
    kept = {}
    for q, case in cases.items():
        dropit.to_dropit(case.model, gamma=0.9, quantize=q)
        torch.manual_seed(1)
        kept[q] = dropit.measure_cache(case.model, *case.args, **case.kwargs).total_bytes
    kinds = {fwd.kind for _, _, fwd in dropit.converted_modules(cases["int8"].model)}
    assert converted <= kinds
    assert kept["int8"] < 0.95 * kept[None], kept
    torch.manual_seed(1)
    cases["int8"].loss(cases["int8"].forward()).backward()
    grads = [p.grad for p in cases["int8"].model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.slow
def test_compiles_fullgraph_with_eager_gradients():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(40, 40), hf_act.NewGELUActivation(), LlamaRMSNorm(40), hf_act.SiLUActivation())
    model = dropit.to_dropit(plain, gamma=0.5, quantize="int8")
    x = _input(SHAPE)

    def grads(run):
        model.zero_grad(set_to_none=True)
        run(x).square().sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    eager = grads(model)
    compiled = grads(torch.compile(model, fullgraph=True))
    for n in eager:
        torch.testing.assert_close(compiled[n], eager[n], rtol=1e-3, atol=1e-5, msg=n)
