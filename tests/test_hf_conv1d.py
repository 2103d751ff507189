"""Hugging Face's ``Conv1D`` (GPT-2's Linear with a transposed weight) converted as a Linear.

The core recognises the layer by its structure, so these tests use a local class
of the same name and layout (what transformers' ``pytorch_utils.Conv1D`` is);
tests/test_real_models.py runs the real one inside GPT-2. The last test checks
that the core imports and converts with transformers made unimportable.
"""
import copy
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

import dropit
from dropit.layers import is_hf_conv1d
from dropit.sparsify import observe


class Conv1D(nn.Module):
    """transformers' Conv1D: y = x @ W + b with W stored (nx, nf)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf, self.nx = nf, nx
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.1)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(size_out)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = Conv1D(32, 16)
        self.act = nn.GELU()
        self.c_proj = Conv1D(16, 32)
        self.head = nn.Linear(16, 4)

    def forward(self, x):  # (B, T, 16)
        return self.head(self.c_proj(self.act(self.c_fc(x))))


def _grads(model, x):
    model.zero_grad()
    x = x.clone().requires_grad_()
    model(x).square().sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}, x.grad


def test_recognised_by_structure_and_converted_as_its_own_kind():
    model = dropit.to_dropit(Block(), gamma=0.9)
    kinds = {name: fwd.kind for name, _, fwd in dropit.converted_modules(model)}
    assert kinds == {"c_fc": "hf_conv1d", "c_proj": "hf_conv1d", "head": "linear"}
    assert type(model.c_fc) is Conv1D and list(model.state_dict()) == list(Block().state_dict())


def test_lookalikes_are_left_alone():
    odd = Conv1D(8, 4)
    odd.weight = nn.Parameter(torch.randn(8, 4))  # (nf, nx): not the Conv1D layout
    assert not is_hf_conv1d(odd)
    assert not is_hf_conv1d(nn.Conv1d(4, 8, 1))  # torch's Conv1d is a convolution
    no_bias = Conv1D(8, 4)
    no_bias.bias = None
    assert is_hf_conv1d(no_bias)

    class Other(nn.Module):  # same layout, another name
        def __init__(self):
            super().__init__()
            self.nf, self.weight = 8, nn.Parameter(torch.randn(4, 8))

    assert not is_hf_conv1d(Other())


def test_gamma_zero_gives_the_plain_gradients():
    plain = Block()
    model = dropit.to_dropit(copy.deepcopy(plain), gamma=0.0)
    x = torch.randn(3, 5, 16)
    (g_plain, gx_plain), (g_drop, gx_drop) = _grads(plain, x), _grads(model, x)
    assert g_plain.keys() == g_drop.keys()
    for name in g_plain:
        torch.testing.assert_close(g_drop[name], g_plain[name], msg=name)
    torch.testing.assert_close(gx_drop, gx_plain)
    assert g_drop["c_fc.weight"].shape == (16, 32)  # the stored (nx, nf) layout


def test_weight_gradient_uses_the_kept_input_and_input_gradient_is_exact():
    layer = Conv1D(6, 10)
    ref = copy.deepcopy(layer)
    dropit.to_dropit(layer, strategy="mink", gamma=0.7)
    x = torch.randn(4, 3, 10, requires_grad=True)
    kept = []
    with observe(lambda dense, record: kept.append(dropit.expand(record))):
        y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    (x_kept,) = kept
    assert (x_kept != 0).sum() < x.numel()  # something was dropped
    # explicit reference: y = x W + b, dL/dW = x_kept^T g, dL/dx = g W^T (exact)
    torch.testing.assert_close(layer.weight.grad, x_kept.reshape(-1, 10).t() @ g.reshape(-1, 6))
    torch.testing.assert_close(layer.bias.grad, g.reshape(-1, 6).sum(0))
    torch.testing.assert_close(x.grad, g @ ref.weight.detach().t())
    torch.testing.assert_close(y, ref(x))


def test_set_gamma_restore_filter_and_per_name_rates():
    model = dropit.to_dropit(Block(), gamma=0.9, gamma_by_name={"c_proj": 0.5},
                             module_filter_fn=lambda m, name: name != "head")
    rates = {name: fwd.spec.gamma for name, _, fwd in dropit.converted_modules(model)}
    assert rates == {"c_fc": 0.9, "c_proj": 0.5}
    dropit.set_gamma(model, {"c_*": 0.3})
    assert {fwd.spec.gamma for _, _, fwd in dropit.converted_modules(model)} == {0.3}
    seen = []
    dropit.to_dropit(Block(), module_filter_fn=lambda m, name: seen.append((type(m).__name__, name)) or True)
    assert ("Conv1D", "c_fc") in seen and ("Conv1D", "c_proj") in seen
    dropit.restore(model)
    assert not list(dropit.converted_modules(model)) and "forward" not in model.c_fc.__dict__


def test_meter_charges_the_compact_record_to_the_conv1d():
    x = torch.randn(8, 64, 16)
    plain = dropit.measure_cache(Block(), x)
    report = dropit.measure_cache(dropit.to_dropit(Block(), gamma=0.9, module_filter_fn=lambda m, n: n != "head"), x)
    by_name = {layer.name: layer for layer in report.layers}
    assert by_name["c_fc"].dense_bytes == x.numel() * 4  # the dense input it stood for
    assert by_name["c_fc"].bytes < by_name["c_fc"].dense_bytes / 3
    assert report.total_bytes < plain.total_bytes


def test_bf16_autocast_runs_in_bf16():
    model = dropit.to_dropit(Block(), gamma=0.9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model.c_fc(torch.randn(2, 4, 16))
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert model.c_fc.weight.grad.dtype == torch.float32 and torch.isfinite(model.c_fc.weight.grad).all()


BLOCKER = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("transformers", "timm"):
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, Block())
"""


@pytest.mark.slow
def test_core_imports_and_converts_without_transformers():
    script = BLOCKER + textwrap.dedent("""
        import importlib, pkgutil
        import torch, torch.nn as nn
        import dropit
        for info in pkgutil.iter_modules(dropit.__path__):
            if info.name != "lab":
                importlib.import_module(f"dropit.{info.name}")

        class Conv1D(nn.Module):
            def __init__(self):
                super().__init__()
                self.nf, self.weight, self.bias = 3, nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.zeros(3))

        m = dropit.to_dropit(Conv1D(), gamma=0.5)
        m.train()
        y = m.forward(torch.randn(2, 5, requires_grad=True))
        y.sum().backward()
        assert m.weight.grad.shape == (5, 3)
        assert not any(k.split(".")[0] in ("transformers", "timm") for k in sys.modules), "core imported them"
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
