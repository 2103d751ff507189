"""Models by name, local pretrained weights, the default DropIT layer filter, top-k accuracy."""
import pytest
import torch
import torch.nn as nn

import dropit
from dropit.lab.train.config import RunConfig
from dropit.lab.train.metrics import Meter, accuracy, topk_correct
from dropit.lab.models.catalog import apply_dropit, build_model, default_dropit_exclude, dropit_filter, load_weights


@pytest.mark.parametrize("name, size, first, last", [
    ("resnet18_cifar", 32, "conv1", "fc"), ("resnet_mini", 32, "conv1", "fc"),
    ("vit_tiny", 32, "conv_proj", "heads.head"), ("resnet18", 64, "conv1", "fc"),
    ("vit_tiny_conv", 32, "conv_proj.conv_bn_relu_0.0", "heads.head"),
])
def test_models_build_and_name_first_and_last_layers(name, size, first, last):
    m = build_model(name, 7, image_size=size).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, size, size)).shape == (2, 7)
    assert default_dropit_exclude(m) == [first, last]


def test_resnet18_cifar_stem():
    m = build_model("resnet18_cifar", 100)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1) and isinstance(m.maxpool, nn.Identity)
    assert build_model("resnet18", 100).conv1.kernel_size == (7, 7)


def test_vit_b_16_is_torchvisions():
    m = build_model("vit_b_16", 100)
    assert m.hidden_dim == 768 and len(m.encoder.layers) == 12 and m.heads.head.out_features == 100


@pytest.mark.parametrize("patch, channels", [(2, [32]), (8, [32, 64, 128])])
def test_vit_tiny_conv_stem_halves_once_per_conv_to_the_patch_grid(patch, channels):
    m = build_model("vit_tiny_conv", 100, patch_size=patch)
    convs = [c for c in m.conv_proj.modules() if isinstance(c, nn.Conv2d)]
    assert [c.out_channels for c in convs[:-1]] == channels and all(c.stride == (2, 2) for c in convs[:-1])
    assert convs[-1].kernel_size == (1, 1) and convs[-1].out_channels == 192  # the projection to the width
    tokens = m._process_input(torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, (32 // patch) ** 2, 192)


def test_vit_tiny_conv_needs_a_power_of_two_patch():
    with pytest.raises(ValueError, match="power of two"):
        build_model("vit_tiny_conv", 100, image_size=48, patch_size=6)


def test_unknown_model():
    with pytest.raises(ValueError, match="resnet_mini"):
        build_model("resnet50", 10)


def test_local_weights_replace_a_head_of_another_size(tmp_path):
    src = build_model("vit_tiny", 10, image_size=32)
    path = tmp_path / "w.pth"
    torch.save({"model": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = build_model("vit_tiny", 5, image_size=32, patch_size=4)
    skipped = load_weights(dst, path)
    assert skipped == ["heads.head.weight", "heads.head.bias"]
    torch.testing.assert_close(dst.conv_proj.weight, src.conv_proj.weight)
    # another resolution: the position embedding is interpolated
    big = build_model("vit_tiny", 10, image_size=64, patch_size=4, weights=path)
    assert big.encoder.pos_embedding.shape[1] == 1 + 16 * 16
    torch.testing.assert_close(big.encoder.layers[0].mlp[0].weight, src.encoder.layers[0].mlp[0].weight)
    with pytest.raises(ValueError, match="do not fit"):
        load_weights(build_model("resnet_mini", 10), path)
    with pytest.raises(FileNotFoundError, match="pretrained weights file not found"):
        build_model("resnet_mini", 10, weights=tmp_path / "missing.pth")


def test_apply_dropit_respects_the_filter():
    m = apply_dropit(build_model("resnet_mini", 10), RunConfig(dropit=True, dropit_gamma=0.7))
    conv = {n: f for n, _, f in dropit.converted_modules(m) if f.kind != "relu"}
    assert "conv1" not in conv and "fc" not in conv and "layer1.0.conv1" in conv
    assert all(f.spec.gamma == 0.7 for f in conv.values())
    m2 = apply_dropit(build_model("resnet_mini", 10), RunConfig(dropit=True, dropit_exclude=["layer*"]))
    names = {n for n, _, f in dropit.converted_modules(m2) if f.kind != "relu"}
    assert names == {"conv1", "fc"}
    assert not list(dropit.converted_modules(apply_dropit(build_model("resnet_mini", 10), RunConfig(dropit=False))))
    assert dropit_filter(["a.*"])(None, "a.b") is False and dropit_filter(["a.*"])(None, "b") is True


def test_topk_accuracy_and_meter():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5], [0.3, 0.2, 0.1]])
    target = torch.tensor([1, 2, 0, 2])
    assert topk_correct(logits, target, (1, 2, 5)) == [1, 2, 4]  # k capped at 3 classes
    assert accuracy(logits, target, (1, 2)) == [25.0, 50.0]
    meter = Meter()
    meter.update(4, top1=1, loss=2.0)
    meter.update(6, top1=3, loss=1.0)
    assert meter.percent("top1") == 40.0 and meter.mean("loss") == pytest.approx(0.3)
    assert meter.all_reduce().n == 10  # no process group: unchanged


@pytest.mark.parametrize("name, size, patch, tokens", [("deit_mini", 32, None, 64), ("deit_mini", 64, 16, 16),
                                                      ("deit_tiny", 64, None, 16)])
def test_timm_deit_models(name, size, patch, tokens):
    pytest.importorskip("timm")
    m = build_model(name, 7, image_size=size, patch_size=patch).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, size, size)).shape == (2, 7)
    assert m.patch_embed.num_patches == tokens and m.embed_dim == 192
    assert default_dropit_exclude(m) == ["patch_embed.proj", "head"]  # as the release's DeiT scripts
    assert len(m.blocks) == (4 if name == "deit_mini" else 12)
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        build_model(name, 7, image_size=30, patch_size=4)


def test_deit_weights_at_another_resolution_resample_the_position_embedding(tmp_path):
    pytest.importorskip("timm")
    src = build_model("deit_mini", 100, image_size=32, patch_size=8)  # 4x4 patches of 8
    torch.save({"model": src.state_dict()}, tmp_path / "w.pth")
    dst = build_model("deit_mini", 10, image_size=64)  # 8x8 patches of 8
    assert load_weights(dst, tmp_path / "w.pth") == ["head.weight", "head.bias"]
    torch.testing.assert_close(dst.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    assert dst.pos_embed.shape == (1, 65, 192)
    torch.testing.assert_close(dst.pos_embed[:, 0], src.pos_embed[:, 0])  # the class token's embedding is kept
