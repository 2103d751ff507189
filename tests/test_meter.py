"""The memory meter: byte counts against hand-computed sizes, storages once, meta estimates."""
import pytest
import torch
import torch.nn as nn
import torchvision

import dropit


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_plain_mlp_bytes_equal_hand_computed_sizes():
    x = torch.randn(16, 32, requires_grad=True)
    report = dropit.measure_cache(Mlp(), x)
    per_layer = {row["name"]: row["bytes"] for row in report.to_rows()}
    # fc1 saves its input (16x32 fp32); GELU its input (16x64); fc2 its input, GELU's output (16x64)
    assert per_layer == {"fc1": 16 * 32 * 4, "act": 16 * 64 * 4, "fc2": 16 * 64 * 4}
    assert report.total_bytes == sum(per_layer.values())
    assert report.dense_bytes == 0
    assert sum(r["share"] for r in report.to_rows()) == pytest.approx(1.0)


def test_dropit_mlp_bytes_equal_compact_record_sizes():
    x = torch.randn(16, 32, requires_grad=True)
    model = dropit.to_dropit(Mlp(), strategy="mink", gamma=0.75)
    report = dropit.measure_cache(model, x)
    layers = {row["name"]: row for row in report.to_rows()}
    # kept values (n/4 fp32) + bitmask (n/8 bytes)
    assert layers["fc1"]["bytes"] == 16 * 32 // 4 * 4 + 16 * 32 // 8
    assert layers["fc2"]["bytes"] == 16 * 64 // 4 * 4 + 16 * 64 // 8
    assert layers["fc1"]["dense_bytes"] == 16 * 32 * 4
    assert layers["act"]["bytes"] == 16 * 64 * 4 and layers["act"]["dense_bytes"] == 0


def test_shared_storage_is_counted_once():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(32, 4), nn.Linear(32, 4)

        def forward(self, x):
            h = x * 2  # one tensor saved by both heads, one by a view
            return self.a(h) + self.b(h[:, :32])

    x = torch.randn(8, 32, requires_grad=True)
    report = dropit.measure_cache(TwoHeads(), x)
    assert report.total_bytes == 8 * 32 * 4
    assert [r["name"] for r in report.to_rows()] == ["a"]  # charged to the first saver


def test_parameters_and_buffers_are_excluded():
    bn = nn.BatchNorm1d(32)
    x = torch.randn(8, 32, requires_grad=True)
    report = dropit.measure_cache(bn, x)
    # the input plus the per-channel saved mean and inverse std
    assert report.total_bytes == 8 * 32 * 4 + 2 * 32 * 4


def test_meta_estimate_equals_a_real_run():
    model = dropit.to_dropit(torchvision.models.resnet18(num_classes=10), strategy="mink", gamma=0.8)
    real = dropit.measure_cache(model, torch.randn(2, 3, 64, 64))
    meta = dropit.estimate_cache(model, (2, 3, 64, 64))
    assert meta.total_bytes == real.total_bytes
    assert meta.dense_bytes == real.dense_bytes
    assert {r["name"]: r["bytes"] for r in meta.to_rows()} == {r["name"]: r["bytes"] for r in real.to_rows()}
    assert next(model.parameters()).device.type == "cpu"  # the original model is untouched


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("strategy", ["mink", "sampled"])
def test_dropit_resnet_never_keeps_more_than_the_plain_model(gamma, strategy):
    plain = torchvision.models.resnet18(num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    base = dropit.measure_cache(plain, x).total_bytes
    kept = dropit.measure_cache(dropit.to_dropit(plain, strategy=strategy, gamma=gamma), x).total_bytes
    assert kept <= base
    if gamma == 0.9:
        assert kept < 0.75 * base


def test_without_relu_mask_dropit_saves_little_on_resnet():
    """Why the ReLU companion exists: the ReLU holds the dense conv input."""
    x = torch.randn(2, 3, 64, 64)
    plain = torchvision.models.resnet18(num_classes=10)
    base = dropit.measure_cache(plain, x).total_bytes
    without = dropit.measure_cache(dropit.to_dropit(plain, gamma=0.9, relu_mask=False, compact_maxpool=False), x)
    # only the convolutions whose input no ReLU holds (the stem's, on the image) really shrink
    assert without.total_bytes > 0.95 * base
    assert without.dense_bytes > 0.3 * base  # although DropIT compacted this much


def test_report_table_lists_layers_and_total():
    report = dropit.measure_cache(Mlp(), torch.randn(4, 32, requires_grad=True))
    text = report.table()
    assert "fc1" in text and "total" in text.splitlines()[-1]


@pytest.mark.parametrize("gamma", [None, 0.9])
def test_meta_estimate_equals_a_real_run_with_attention(gamma):
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10
    )
    if gamma is not None:
        dropit.to_dropit(model, strategy="mink", gamma=gamma)
    real = dropit.measure_cache(model, torch.randn(4, 3, 32, 32))
    meta = dropit.estimate_cache(model, (4, 3, 32, 32))
    assert meta.total_bytes == real.total_bytes
    assert torch.nn.functional.scaled_dot_product_attention.__module__ != "dropit.meter"  # restored


def test_measuring_leaves_no_tensor_alive():
    """A saved output packed as itself would keep the forward's graph alive in a cycle after measuring."""
    import gc

    def live_tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    model = nn.Sequential(nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, 4))  # sigmoid saves its output
    x = torch.randn(4, 16)
    first = dropit.measure_cache(model, x).total_bytes
    before = live_tensors()
    assert [dropit.measure_cache(model, x).total_bytes for _ in range(2)] == [first, first]
    assert live_tensors() == before


def _small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.5), nn.Flatten(), nn.Linear(8 * 4 * 4, 5),
    )


def _state(model):
    return {name: b.clone() for name, b in model.named_buffers()}


@pytest.mark.parametrize("convert", [None, dict(gamma=0.9), dict(gamma=0.9, strategy="random", quantize="int8")])
def test_measuring_leaves_running_statistics_and_counters_untouched(convert):
    model = _small_cnn()
    if convert is not None:
        dropit.to_dropit(model, **convert)
    before = _state(model)
    assert int(before["1.num_batches_tracked"]) == 0
    dropit.measure_cache(model, torch.randn(4, 3, 8, 8))
    after = _state(model)
    assert after.keys() == before.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0, msg=name)
    model.train()(torch.randn(4, 3, 8, 8))  # the buffers are still the module's own: a real step moves them
    assert int(model[1].num_batches_tracked) == 1 and not torch.equal(model[1].running_mean, before["1.running_mean"])


@pytest.mark.parametrize("convert", [None, dict(gamma=0.9, strategy="random")])
def test_measuring_leaves_the_random_number_generator_untouched(convert):
    model = _small_cnn()  # its Dropout (and the "random" strategy) draw from the global generator
    if convert is not None:
        dropit.to_dropit(model, **convert)
    x = torch.randn(4, 3, 8, 8)
    state = torch.get_rng_state()
    dropit.measure_cache(model, x)
    assert torch.equal(torch.get_rng_state(), state)


def test_measuring_restores_each_modules_mode():
    model = _small_cnn().train()
    model[1].eval()  # a frozen BatchNorm inside a training model
    dropit.measure_cache(model, torch.randn(4, 3, 8, 8))
    assert model.training and not model[1].training and model[0].training
    dropit.measure_cache(model.eval(), torch.randn(4, 3, 8, 8))
    assert not any(m.training for m in model.modules())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_measuring_leaves_the_cuda_generator_and_buffers_untouched():
    model = dropit.to_dropit(_small_cnn().cuda(), gamma=0.9, strategy="random")
    x = torch.randn(4, 3, 8, 8, device="cuda")
    state, before = torch.cuda.get_rng_state(), _state(model)
    report = dropit.measure_cache(model, x)
    assert report.peak_cuda_bytes is not None
    assert torch.equal(torch.cuda.get_rng_state(), state)
    for name, b in _state(model).items():
        torch.testing.assert_close(b, before[name], rtol=0, atol=0, msg=name)


def test_relu_and_maxpool_rows_say_what_they_store():
    model = dropit.to_dropit(_small_cnn(), gamma=0.9)
    report = dropit.measure_cache(model, torch.randn(4, 3, 8, 8))
    rows = {row["name"]: row for row in report.to_rows()}
    n = 4 * 8 * 8 * 8
    assert rows["2"]["storage"] == "1-bit mask" and rows["2"]["bytes"] == n // 8
    assert rows["3"]["storage"] == "1-byte offsets" and rows["3"]["bytes"] == n // 4
    assert "1-bit mask" in report.table() and rows["2"]["dense_bytes"] == 0
    plain = {row["name"]: row for row in dropit.measure_cache(_small_cnn(), torch.randn(4, 3, 8, 8)).to_rows()}
    assert plain["2"]["storage"] == "plain"
