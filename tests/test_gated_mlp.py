"""Gated MLPs (SwiGLU, GeGLU): the product act(gate) * up keeping gate and up quantized (dropit.gated)."""
import copy

import pytest
import torch
import torch.nn as nn

import dropit
from dropit import gated, kinds


class GatedMLP(nn.Module):
    """LLaMA's MLP, written out: down(act(gate(x)) * up(x))."""

    def __init__(self, width=16, inner=40, act=None, swapped=False):
        super().__init__()
        self.gate_proj = nn.Linear(width, inner, bias=False)
        self.up_proj = nn.Linear(width, inner, bias=False)
        self.down_proj = nn.Linear(inner, width, bias=False)
        self.act_fn = act or nn.SiLU()
        self.swapped = swapped

    def forward(self, x):
        if self.swapped:  # a look-alike: the activation on the other operand
            return self.down_proj(self.gate_proj(x) * self.act_fn(self.up_proj(x)))
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


@pytest.mark.parametrize("level, bound", [("int8", 0.02), ("int4", 0.35)])
@pytest.mark.parametrize("act", [nn.SiLU(), nn.GELU(), nn.GELU(approximate="tanh")], ids=["swiglu", "geglu", "geglu-tanh"])
def test_gated_product_gradients_against_dense_autograd(act, level, bound):
    torch.manual_seed(0)
    plain = GatedMLP(act=act)
    model = dropit.to_dropit(copy.deepcopy(plain), gamma=0.0, quantize=level)
    assert kinds.entry_of(model).name == "gated_mlp"
    assert model.act_fn.__dict__.get("forward") is None  # computed by the MLP's product, not converted alone
    x = torch.randn(4, 7, 16, requires_grad=True)
    want = plain(x)
    got = model(x)
    assert torch.equal(got, want)  # the module's own ops: bit for bit
    g = torch.randn_like(want)
    want_grads = torch.autograd.grad(want, [x, *plain.parameters()], g)
    got_grads = torch.autograd.grad(got, [x, *model.parameters()], g)
    errors = [float((a - b).norm() / b.norm()) for a, b in zip(got_grads, want_grads)]
    assert all(e < bound for e in errors), errors  # codes of gate and up: within the documented error
    assert errors[0] > 0 and errors[-1] == 0  # x's gradient approximate; down_proj's exact (its input is exact)


def test_the_product_keeps_gate_and_up_quantized_once():
    torch.manual_seed(0)
    plain = GatedMLP()
    x = torch.randn(4, 7, 16, requires_grad=True)
    dense = dropit.measure_cache(plain, x)
    model = dropit.to_dropit(copy.deepcopy(plain), gamma=0.9, quantize="int8")
    report = dropit.measure_cache(model, x)
    row = next(layer for layer in report.layers if layer.name == "")
    inner = 4 * 7 * 40 * 4
    assert row.dense_bytes == 2 * inner and row.storage.get("int8", 0) < 0.3 * 2 * inner
    assert report.total_bytes < 0.5 * dense.total_bytes


def test_a_look_alike_is_left_alone():
    model = GatedMLP(swapped=True)
    assert not gated.is_gated_mlp(model)
    dropit.to_dropit(model, gamma=0.9, quantize="int8")
    assert kinds.entry_of(model) is None and model.__dict__.get("forward") is None
    assert model.act_fn.forward.kind == "silu"  # its parts are converted on their own


def test_llama_mlps_are_converted_and_the_model_stays_bit_identical():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=64, vocab_size=50, max_position_embeddings=16)
    torch.manual_seed(0)
    plain = transformers.LlamaForCausalLM(cfg).train()
    model = dropit.to_dropit(copy.deepcopy(plain), gamma=0.9, quantize="int8")
    names = {name: fwd.kind for name, _, fwd in dropit.converted_modules(model)}
    assert names["model.layers.0.mlp"] == "gated_mlp" and "model.layers.0.mlp.act_fn" not in names
    ids = torch.randint(0, 50, (2, 16))
    assert torch.equal(model(input_ids=ids).logits, plain(input_ids=ids).logits)
    estimate = dropit.estimate_cache(model, ids)  # meta: recognised by structure alone
    assert any(layer.name == "model.layers.0.mlp" and layer.dense_bytes for layer in estimate.layers)
