"""Models by name, and the default choice of layers DropIT leaves dense.

    build_model("resnet18_cifar", 100)          # torchvision resnet18, 3x3 stride-1 stem, no max-pool
    build_model("resnet18", 1000)               # torchvision resnet18 (ImageNet stem)
    build_model("vit_b_16", 100, image_size=224, weights="vit_b_16.pth")
    build_model("resnet_mini", 100)             # narrow ResNet (16..128 channels), CIFAR stem: CPU demos
    build_model("vit_tiny", 100, image_size=32) # 4-layer, 192-wide torchvision ViT: CPU demos
    build_model("vit_small", 100)               # 6-layer, 384-wide torchvision ViT, patch 4 at 32x32: the speed tables
    build_model("vit_tiny_conv", 100)           # the same with a convolutional stem: the claim study's ViT
    build_model("deit_small", 100, weights="weights/deit_small_patch16_224.pth")  # timm's DeiT-Ti/S/B
    build_model("deit_mini", 100, image_size=32) # timm DeiT-Ti blocks, 4 deep: CPU demos

The DeiT models (the ICLR release's table) are timm's, imported only when built.
Weights come from a local file (a state_dict, or a dict holding one under
"model" / "state_dict"), or by name (``weights="torchvision:ViT_B_16_Weights.IMAGENET1K_V1"``,
downloaded once into a cache: :mod:`dropit.lab.models.weights`); a classifier
or position embedding of another shape (ImageNet head on CIFAR-100, another resolution) is re-initialised or
interpolated, and every other key must match.

The paper converts every conv and linear layer except the first layer of the
network; its later release also keeps the classifier dense.
:func:`default_dropit_exclude` names those two layers for any model.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
from torchvision.models import resnet18 as tv_resnet18
from torchvision.models import vit_b_16 as tv_vit_b_16
from torchvision.models.resnet import BasicBlock, conv1x1
from torchvision.models.vision_transformer import ConvStemConfig, VisionTransformer, interpolate_embeddings

MODEL_NAMES = ("resnet18_cifar", "resnet18", "vit_b_16", "resnet_mini", "vit_tiny", "vit_tiny_conv", "vit_small",
               "deit_tiny", "deit_small", "deit_base", "deit_mini")
_DEIT = {"deit_tiny": "deit_tiny_patch16_224", "deit_small": "deit_small_patch16_224", "deit_base": "deit_base_patch16_224"}


class MiniResNet(nn.Module):
    """A narrow ResNet with torchvision's BasicBlock and module names (conv1, layer1..4, fc)."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (16, 32, 64, 128), blocks: Sequence[int] = (1, 1, 1, 1)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)  # CIFAR stem
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        c = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or c != w:
                down = nn.Sequential(conv1x1(c, w, stride), nn.BatchNorm2d(w))
            layer = [BasicBlock(c, w, stride, down)] + [BasicBlock(w, w) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            c = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 16, H, W)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 128, H/8, W/8)
        return self.fc(torch.flatten(self.avgpool(x), 1))  # (B, classes)


def _resnet18_cifar(num_classes: int) -> nn.Module:
    m = tv_resnet18(weights=None, num_classes=num_classes)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(m.conv1.weight, mode="fan_out", nonlinearity="relu")
    m.maxpool = nn.Identity()
    return m


def _deit(name: str, num_classes: int, size: int, patch_size: int | None) -> nn.Module:
    try:
        import timm
    except ImportError as e:
        raise ImportError(f"model {name!r} is timm's; install it: pip install 'dropit[lab]' (or pip install timm)") from e
    options = dict(num_classes=num_classes, img_size=size)
    if name == "deit_mini":  # DeiT-Ti's width and heads, 4 blocks
        options.update(depth=4, patch_size=patch_size or max(1, size // 8))
    elif patch_size:
        options.update(patch_size=patch_size)
    if size % options.get("patch_size", 16):
        raise ValueError(f"{name}: image_size {size} is not a multiple of patch_size {options.get('patch_size', 16)}")
    return timm.create_model(_DEIT.get(name, "deit_tiny_patch16_224"), pretrained=False, **options)


def _vit_tiny(name: str, num_classes: int, size: int, patch_size: int | None) -> nn.Module:
    """torchvision's ViT, 4 layers, width 192, 3 heads, MLP 384; ``vit_tiny_conv`` replaces the patch embedding
    by a stem of 3x3 stride-2 convolutions (BatchNorm, ReLU; 32, 64, 128... channels) and a 1x1 projection, the
    convolutional stem of Xiao et al. 2021 ("Early convolutions help transformers see better"), which trains a
    ViT faster from scratch; the patch size must then be a power of two."""
    patch = patch_size or max(1, size // 8)
    if size % patch:
        raise ValueError(f"{name}: image_size {size} is not a multiple of patch_size {patch}")
    stem = None
    if name == "vit_tiny_conv":
        if patch < 2 or patch & (patch - 1):
            raise ValueError(f"vit_tiny_conv: patch_size {patch} is not a power of two (one stride-2 conv per halving); "
                             "choose 2, 4, 8, ...")
        stem = [ConvStemConfig(out_channels=32 << i, kernel_size=3, stride=2) for i in range(patch.bit_length() - 1)]
    return VisionTransformer(image_size=size, patch_size=patch, num_layers=4, num_heads=3, hidden_dim=192,
                             mlp_dim=384, num_classes=num_classes, conv_stem_configs=stem)


def _vit_small(num_classes: int, size: int, patch_size: int | None) -> nn.Module:
    """torchvision's ViT, 6 layers, width 384, 6 heads, MLP 1536; patch ``size // 8`` (4 at 32x32)."""
    patch = patch_size or max(1, size // 8)
    if size % patch:
        raise ValueError(f"vit_small: image_size {size} is not a multiple of patch_size {patch}")
    return VisionTransformer(image_size=size, patch_size=patch, num_layers=6, num_heads=6, hidden_dim=384,
                             mlp_dim=1536, num_classes=num_classes)


_NATIVE_32 = ("resnet18_cifar", "resnet_mini", "vit_tiny", "vit_tiny_conv", "vit_small", "deit_mini")  # the CIFAR stem and the CPU demo models


def default_image_size(model: str, dataset: str | None = None) -> int:
    """The image size when none is given: the lab's one rule for it.

    On data (``dataset`` given) the data decides: 32 for CIFAR-100, 224 for
    ImageNet and Imagenette. Without data (memory measured on random images)
    the model's own resolution: 32 for the CIFAR-stem and demo models, 224 for
    the others.
    """
    if dataset is not None:
        return 32 if dataset == "cifar100" else 224
    return 32 if model in _NATIVE_32 else 224


def build_model(
    name: str,
    num_classes: int,
    *,
    image_size: int | None = None,
    weights: str | Path | None = None,
    patch_size: int | None = None,
    fresh_head: bool = False,
) -> nn.Module:
    """A freshly initialised model, or one loaded from ``weights`` (a local file or a name: :func:`load_weights`);
    ``fresh_head``: the classifier keeps its fresh initialisation even where the weights' head would fit.

    ``image_size`` defaults to the model's own (:func:`default_image_size`); only the ViTs depend on it.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    size = image_size or default_image_size(name)
    if name == "resnet18_cifar":
        model = _resnet18_cifar(num_classes)
    elif name == "resnet18":
        model = tv_resnet18(weights=None, num_classes=num_classes)
    elif name == "resnet_mini":
        model = MiniResNet(num_classes)
    elif name == "vit_b_16":
        model = tv_vit_b_16(weights=None, num_classes=num_classes, image_size=size)
    elif name in ("vit_tiny", "vit_tiny_conv"):
        model = _vit_tiny(name, num_classes, size, patch_size)
    elif name == "vit_small":
        model = _vit_small(num_classes, size, patch_size)
    elif name in _DEIT or name == "deit_mini":
        model = _deit(name, num_classes, size, patch_size)
    if weights:
        load_weights(model, weights, fresh=[classifier_name(model)] if fresh_head else ())
    return model


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state_dict, got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(model: nn.Module, path: str | Path, fresh: Sequence[str] = ()) -> list[str]:
    """Load a state_dict into ``model``; returns the keys re-initialised (shape mismatch: the head; and those of
    the modules named in ``fresh``, which keep the model's own initialisation).

    ``path`` is a local file or published weights by name, fetched into the
    default cache if absent (:func:`dropit.lab.models.weights.resolve_weights`).
    A ViT position embedding of another length is interpolated to this model's
    resolution. Any other missing or unexpected key raises.
    """
    from dropit.lab.models.weights import resolve_weights

    state = _state_dict_from_file(resolve_weights(path))
    own = model.state_dict()
    pos = "encoder.pos_embedding"
    if isinstance(model, VisionTransformer) and pos in state and state[pos].shape != own[pos].shape:
        state = interpolate_embeddings(model.image_size, model.patch_size, state)
    if "pos_embed" in own and "pos_embed" in state and state["pos_embed"].shape != own["pos_embed"].shape:
        from timm.layers import resample_abs_pos_embed  # a timm ViT at another resolution

        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"], list(model.patch_embed.grid_size), num_prefix_tokens=model.num_prefix_tokens)
    skipped = [k for k, v in state.items() if k in own and (v.shape != own[k].shape
                                                            or any(k.startswith(f"{m}.") for m in fresh))]
    for k in skipped:
        del state[k]
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in skipped]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the model; missing {missing[:8]}, unexpected {unexpected[:8]}")
    return skipped


def _is_layer(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))


def classifier_name(model: nn.Module) -> str | None:
    """The classifier's module name: the lab's one rule, the last Linear (``fc``, ``heads.head``, ``head``)."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def default_dropit_exclude(model: nn.Module, *, classifier: bool = True) -> list[str]:
    """The layers DropIT leaves dense, by the lab's one rule: the first convolution/linear layer, and the
    classifier (:func:`classifier_name`) unless ``classifier=False`` (the paper's v1 protocol, its Cache column)."""
    layers = [name for name, m in model.named_modules() if _is_layer(m)]
    head = classifier_name(model)
    out = layers[:1]
    if classifier and head is not None and head not in out:
        out.append(head)
    return out


def dropit_filter(exclude: Sequence[str]) -> Callable[[nn.Module, str], bool]:
    """A ``module_filter_fn`` for :func:`dropit.to_dropit` converting all but names matching ``exclude``."""
    patterns = list(exclude)

    def keep(module: nn.Module, name: str) -> bool:
        return not any(fnmatch.fnmatchcase(name, p) for p in patterns)

    return keep


def apply_dropit(model: nn.Module, cfg) -> nn.Module:
    """Convert ``model`` per a RunConfig's dropit_* fields (no-op if ``cfg.dropit`` is false)."""
    if not cfg.dropit:
        return model
    import dropit

    exclude = cfg.dropit_exclude if cfg.dropit_exclude is not None else default_dropit_exclude(model)
    return dropit.to_dropit(
        model, strategy=cfg.dropit_strategy, gamma=cfg.dropit_gamma,
        module_filter_fn=dropit_filter(exclude), relu_mask=cfg.dropit_relu_mask,
        quantize=cfg.dropit_quantize,
    )
