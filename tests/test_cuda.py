"""The core on CUDA: exactness, bf16/fp16 autocast, allocator-measured savings, the Triton kernels,
sync-free and compiled training steps. Skipped without a GPU (``benchmarks/gpu_check.sh`` runs it)."""
import contextlib
import copy

import pytest
import torch
import torch.nn as nn
import torchvision

import dropit
from dropit import kernels
from dropit.kernels import reference
from dropit.lab.models.catalog import build_model
from dropit.record import from_memory_order, memory_order
from kernel_checks import assert_same, awkward_inputs

pytestmark = pytest.mark.cuda


def _grads(model, x, dtype=None):
    model.zero_grad()
    with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        out = model(x)
    out.float().square().mean().backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Linear(64, 32), (8, 16, 64)),
    (lambda: nn.Conv2d(16, 32, 3, padding=1, groups=2), (4, 16, 12, 12)),
    (lambda: nn.ConvTranspose2d(16, 8, 3, stride=2), (4, 16, 6, 6)),
    (lambda: nn.MultiheadAttention(32, 4, batch_first=True), None),
])
def test_gamma_zero_equals_plain_on_cuda(make, shape):
    plain = make().cuda()
    converted = dropit.to_dropit(copy.deepcopy(plain), gamma=0.0)
    if shape is None:
        x = torch.randn(4, 10, 32, device="cuda")
        outs = [m(x, x, x, need_weights=False)[0] for m in (plain, converted)]
        torch.testing.assert_close(outs[0], outs[1])
        return
    x = torch.randn(shape, device="cuda")
    (o1, g1), (o2, g2) = _grads(plain, x), _grads(converted, x)
    torch.testing.assert_close(o1, o2)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("strategy", ["mink", "sampled"])
def test_autocast_trains_resnet_and_vit_with_finite_fp32_gradients(dtype, strategy):
    for model, x in [
        (torchvision.models.resnet18(num_classes=10), torch.randn(4, 3, 64, 64)),
        (torchvision.models.vit_b_16(image_size=32, num_classes=10), torch.randn(4, 3, 32, 32)),
    ]:
        nn.init.normal_(model.fc.weight if hasattr(model, "fc") else model.heads.head.weight)
        model = dropit.to_dropit(model.cuda(), strategy=strategy, gamma=0.9)
        out, grads = _grads(model, x.cuda(), dtype)
        assert out.dtype == dtype
        for name, g in grads.items():
            assert g.dtype == torch.float32 and torch.isfinite(g).all(), name


def test_sampled_gradient_close_to_mink_on_cuda():
    base = nn.Linear(256, 64).cuda()
    x = torch.randn(64, 128, 256, device="cuda")
    g = {s: _grads(dropit.to_dropit(copy.deepcopy(base), strategy=s, gamma=0.9), x)[1]["weight"] for s in ("mink", "sampled")}
    rel = (g["mink"] - g["sampled"]).norm() / g["mink"].norm()
    assert rel < 0.1


def test_allocator_peak_of_a_forward_drops_with_dropit():
    def peak(model):
        x = torch.randn(64, 3, 32, 32, device="cuda")
        return dropit.measure_cache(model, x).peak_cuda_bytes

    base = torchvision.models.resnet18(num_classes=100)
    base.conv1, base.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()
    plain = peak(copy.deepcopy(base).cuda())
    converted = peak(dropit.to_dropit(copy.deepcopy(base).cuda(), strategy="sampled", gamma=0.9))
    assert converted < 0.8 * plain


def test_expanding_a_record_on_cuda_needs_no_host_sync():
    x = torch.randn(64, 64, 32, device="cuda")
    record = dropit.sparsify(x, dropit.DropSpec(0.9, "sampled"))
    assert record.layout.kind == "bits"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any device-to-host sync now raises
    try:
        dense = dropit.expand(record)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    keep = dropit.STRATEGIES["sampled"](x.view(-1), 0.9).view_as(x)
    assert torch.equal(dense, torch.where(keep, x, 0))


# ---- the Triton kernels on CUDA, against the torch reference, bit for bit ----

def _triton_kernels():
    tk = kernels._triton()
    if tk is None:
        pytest.skip("triton is not installed: CUDA runs the torch reference")
    return tk


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("n", [1, 4097, 3_000_017, 25_000_001])
def test_triton_compress_and_expand_match_reference_on_cuda(n, dtype):
    tk = _triton_kernels()
    if n > 10**7 and dtype == torch.float64:
        pytest.skip("fp64 checked at the smaller sizes")
    for _, x in awkward_inputs(n, dtype, device="cuda"):
        assert kernels.backend(x) == "triton"
        sampled = reference.threshold(x, reference.sample_rank(n, 0.9))
        for thr in (sampled, torch.full_like(sampled, -1)):  # -1 selects everything
            selected = int((reference.magnitude_keys(x) > thr).sum())
            for cap in sorted({max(1, selected - 1000), max(1, selected), n + 1}):  # overflow, exact, roomy
                ours, ref = tk.compress(x, cap, thr), reference.compress(x, cap, thr)
                assert_same(ours, ref)
                assert_same([tk.expand(ours[0], ours[1], n)], [reference.expand(ref[0], ref[1], n)])
        mask = torch.rand(n, device="cuda") < 0.1
        cap = max(1, int(mask.sum()) - 5)  # overflows
        assert_same(kernels.compress(x, cap, mask=mask), reference.compress(x, cap, None, mask))
        bits = kernels.pack_nonzero(x)
        assert_same([bits], [reference.pack_nonzero(x)])
        grad = torch.randn_like(x)  # finite: the reference's bf16 path does not keep NaN payloads
        assert_same([kernels.mask_grad(grad, bits)], [reference.mask_grad(grad, bits)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_triton_kernels_on_a_channels_last_activation(dtype):
    tk = _triton_kernels()
    x = torch.randn(128, 64, 32, 32, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    flat, perm = memory_order(x)
    assert perm is not None and flat.data_ptr() == x.data_ptr()
    thr = reference.threshold(flat, reference.sample_rank(flat.numel(), 0.9))
    cap = dropit.STRATEGIES["sampled"].capacity(flat.numel(), 0.9)
    ours = tk.compress(flat, cap, thr)
    assert_same(ours, reference.compress(flat, cap, thr))
    dense = from_memory_order(tk.expand(ours[0], ours[1], flat.numel()), x.shape, perm)
    keep = from_memory_order(reference.magnitude_keys(flat) > thr, x.shape, perm)
    assert int(ours[2]) <= cap  # Gaussian data stay within the sampled capacity's six-sigma margin
    assert torch.equal(dense, torch.where(keep, x, 0))
    bits = tk.pack_nonzero(flat.relu())
    assert_same([bits], [reference.pack_nonzero(flat.relu())])
    assert_same([tk.mask_grad(flat, bits)], [reference.mask_grad(flat, bits)])


def test_triton_kernels_need_no_host_sync_and_are_deterministic():
    tk = _triton_kernels()
    x = torch.randn(64, 256, 56, 56, device="cuda").view(-1)
    thr = reference.threshold(x, reference.sample_rank(x.numel(), 0.9))
    mask = x > 1.0
    tk.compress(x, 1000, thr)  # compile the kernels outside the check
    tk.compress(x, 1000, mask=mask)
    tk.expand(*tk.compress(x, 1000, thr)[:2], x.numel())
    tk.mask_grad(x, tk.pack_nonzero(x))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        runs = []
        for _ in range(2):
            values, bits, count = tk.compress(x, x.numel() // 12, thr)  # overflows: about n/10 selected
            runs.append((values, bits, count, tk.expand(values, bits, x.numel()),
                         *tk.compress(x, x.numel() // 8, mask=mask), tk.mask_grad(x, tk.pack_nonzero(x.relu()))))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert_same(runs[0], runs[1])


# ---- whole DropIT training steps on CUDA: no host sync; torch.compile ----

class _AttentionNet(nn.Module):
    """Tokens -> Linear -> nn.MultiheadAttention -> MLP -> classes: the MHA path of DropIT."""

    def __init__(self, dim=64, heads=4, classes=10):
        super().__init__()
        self.embed = nn.Linear(16, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, x):  # (B, T, 16)
        h = self.embed(x)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        h = h + self.mlp(self.norm(h))
        return self.head(h.mean(1))  # (B, classes)


_MODELS = {
    "resnet18_cifar": (lambda: build_model("resnet18_cifar", 10), (8, 3, 32, 32)),
    "vit_tiny": (lambda: build_model("vit_tiny", 10, image_size=32), (8, 3, 32, 32)),
    "mha": (_AttentionNet, (8, 24, 16)),
}


def _step(model, opt, x, y, dtype=None):
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


@pytest.mark.parametrize("strategy", ["sampled", "mink"])
@pytest.mark.parametrize("name", list(_MODELS))
def test_a_dropit_training_step_makes_no_host_sync(name, strategy):
    make, shape = _MODELS[name]
    model = dropit.to_dropit(make().cuda(), strategy=strategy, gamma=0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(shape, device="cuda"), torch.randint(0, 10, (shape[0],), device="cuda")
    _step(model, opt, x, y, torch.bfloat16)  # warm-up: lazy CUDA, cuBLAS and Triton initialisation
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any device-to-host sync now raises
    try:
        _step(model, opt, x, y, torch.bfloat16)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(p).all() for p in model.parameters())


@contextlib.contextmanager
def _exact_fp32():
    """No TF32, so that compiled and eager differ only by rounding, not by TF32 algorithm choices."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _param_grads(model, x, y):
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_MODELS))
def test_compiled_fullgraph_dropit_matches_eager_on_cuda(name):
    make, shape = _MODELS[name]
    torch.manual_seed(0)
    eager = dropit.to_dropit(make().cuda(), gamma=0.9)
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, fullgraph=True)
    x, y = torch.randn(shape, device="cuda"), torch.randint(0, 10, (shape[0],), device="cuda")
    with _exact_fp32():
        expected = _param_grads(eager, x, y)
        _param_grads(compiled, x, y)  # compiles (fullgraph: any graph break raises)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")  # the compiled step makes no host sync either
        try:
            with torch.compiler.set_stance("fail_on_recompile"):  # the same graphs serve the next step
                got = _param_grads(compiled, x, y)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    total = torch.stack([g.norm() for g in expected.values()]).norm()
    for key, g in got.items():
        ref = expected[key.removeprefix("_orig_mod.")]
        # relative to the parameter's gradient, or to the whole gradient's where that one is ~0
        assert (g - ref).norm() <= 1e-3 * max(ref.norm(), 1e-3 * total), key
