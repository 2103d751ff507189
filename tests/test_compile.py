"""DropIT under torch.compile: no graph breaks, static-shape custom ops, gradients equal to eager.

Inductor compiles slowly on two cores, so the compiled models are tiny and each
is compiled once per module (a module-scoped cache of compiled models).
"""
import copy

import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock

import dropit
from dropit.strategies import STRATEGIES


class TinyResNet(nn.Module):
    """Stem (conv, BN, in-place ReLU, max-pool), one downsampling BasicBlock, a classifier."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        down = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))
        self.layer1 = BasicBlock(8, 16, 2, down)  # its input feeds conv1 and the shortcut: one record
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(x.mean((2, 3)))


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.attn(x, x, x, need_weights=False)[0].mean(1))


MODELS = {
    "resnet": (TinyResNet, (4, 3, 16, 16)),
    "vit": (lambda: torchvision.models.VisionTransformer(16, 8, 1, 2, 32, 64, num_classes=10), (4, 3, 16, 16)),
    "mha": (Attention, (4, 6, 32)),
}


def _grads(model, x, run=None):
    """Gradients of model's parameters after a step of ``run`` (model itself, or its compiled form)."""
    model.zero_grad(set_to_none=True)
    (run if run is not None else model)(x).square().mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.fixture(scope="module")
def compiled():
    """name -> (eager DropIT model, its fullgraph compile, input), compiled once."""
    torch._dynamo.reset()
    out = {}
    for name, (make, shape) in MODELS.items():
        torch.manual_seed(0)
        model = dropit.to_dropit(make(), gamma=0.8)
        out[name] = (model, torch.compile(model, fullgraph=True), torch.randn(shape))
    yield out
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_fullgraph_compile_gives_eager_dropit_gradients(compiled, name):
    model, fast, x = compiled[name]
    buffers = copy.deepcopy(list(model.buffers()))
    eager = _grads(model, x)
    with torch.no_grad():
        for b, saved in zip(model.buffers(), buffers):  # BatchNorm statistics as before the eager step
            b.copy_(saved)
    fast_grads = _grads(model, x, fast)
    assert eager.keys() == fast_grads.keys()
    for k in eager:
        torch.testing.assert_close(fast_grads[k], eager[k], rtol=1e-3, atol=1e-5, msg=k)


@pytest.mark.slow
def test_compiled_step_does_not_recompile(compiled):
    model, fast, x = compiled["resnet"]
    _grads(model, x, fast)
    with torch._dynamo.config.patch(error_on_recompile=True):
        _grads(model, x, fast)
        _grads(model, torch.randn_like(x), fast)


@pytest.mark.slow
def test_compiled_forward_saves_one_record_per_shared_input(compiled):
    """The block's conv1 and shortcut share one record: the compiler merges the identical ops."""
    model, fast, x = compiled["resnet"]
    params = {p.untyped_storage().data_ptr() for p in list(model.parameters()) + list(model.buffers())}
    weight_shapes = {tuple(p.shape) for p in model.parameters()}
    saved = {}

    def pack(t):
        # inductor saves its own (channels_last) copies of conv weights: not activations
        if t.untyped_storage().data_ptr() not in params and tuple(t.shape) not in weight_shapes:
            saved[t.untyped_storage().data_ptr()] = t
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fast(x)
    del out
    block_input = 4 * 8 * 8 * 8
    values = [t for t in saved.values() if t.shape == (STRATEGIES["sampled"].capacity(block_input, 0.8),)]
    assert len(values) == 1
    compiled_bytes = sum(t.untyped_storage().nbytes() for t in saved.values())
    assert compiled_bytes <= 1.05 * dropit.measure_cache(model, x).total_bytes


@pytest.mark.slow
def test_a_converted_cifar_resnet18_traces_without_graph_breaks():
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1, model.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()
    dropit.to_dropit(model, gamma=0.9)
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0, [str(b.reason) for b in explanation.break_reasons]
    assert explanation.graph_count == 1


def _sample_args():
    flat = torch.randn(40_000)
    yield "sampled bits", (flat, 0.9, "sampled", "bits", STRATEGIES["sampled"].capacity(40_000, 0.9))
    yield "mink index", (flat, 0.99, "mink", "index", STRATEGIES["mink"].capacity(40_000, 0.99))
    yield "mink dense", (flat, 0.01, "mink", "dense", 40_000)
    yield "bf16 bits", (flat.bfloat16(), 0.5, "sampled", "bits", 20_000)
    yield "unbiased bits", (flat, 0.9, "unbiased", "bits", STRATEGIES["unbiased"].capacity(40_000, 0.9))
    yield "unbiased dense", (flat, 0.05, "unbiased", "dense", 40_000)
    yield "rescaled index", (flat, 0.99, "rescaled", "index", STRATEGIES["rescaled"].capacity(40_000, 0.99))


@pytest.mark.parametrize("label, args", list(_sample_args()), ids=lambda v: v if isinstance(v, str) else "")
def test_opcheck_sparsify_and_expand(label, args):
    torch.library.opcheck(torch.ops.dropit.sparsify.default, args)
    values, positions, _ = torch.ops.dropit.sparsify(*args)
    kind, n = args[3], args[0].numel()
    if kind != "dense":
        torch.library.opcheck(torch.ops.dropit.expand.default, (values, positions, kind, n))


def test_opcheck_relu_mask_ops():
    x = torch.randn(1001).relu()
    torch.library.opcheck(torch.ops.dropit.pack_nonzero.default, (x,))
    bits = torch.ops.dropit.pack_nonzero(x)
    torch.library.opcheck(torch.ops.dropit.mask_grad.default, (torch.randn(1001), bits))


def test_custom_ops_keep_what_eager_keeps():
    x = torch.randn(8, 64, 33)
    flat = x.view(-1)
    spec = dropit.DropSpec(0.9)
    record = dropit.sparsify(x, spec)
    values, positions, count = torch.ops.dropit.sparsify(flat, 0.9, spec.strategy, record.layout.kind, record.layout.capacity)
    assert torch.equal(values, record.values) and torch.equal(positions, record.positions)
    dense = torch.ops.dropit.expand(values, positions, record.layout.kind, flat.numel())
    assert torch.equal(dense.view_as(x), dropit.expand(record))
