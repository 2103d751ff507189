"""The paper's tables as plain data: CIFAR-100 and ImageNet-1k (arXiv 2202.13808 v1) and the ICLR release's.

Each row of :data:`PAPER_ROWS` (v1) and :data:`ICLR_ROWS` is a dict with the keys

    id          short name, equal to the stem of its parameter file in params/
    table       "cifar100" | "imagenet" | "iclr"
    model       display name, e.g. "ResNet-18 (32x32)" (" w. DropIT" is added by the tables)
    dropit      bool
    gamma       the dropping rate used (0.8 for ResNet-18, 0.9 for ViT-B/16) or None
    top1, top5  accuracy in percent
    cache_mb    the paper's "Cache (MB)": CUDA peak allocated bytes / 2**20 over one
                training-mode forward of 128 random fp32 images (weights, input,
                saved tensors and transient buffers together)
    model_name  the :func:`dropit.lab.models.catalog.build_model` name of the network
    image_size  input resolution

The ImageNet ResNet-18 baseline (69.76 / 89.08) is torchvision's published
accuracy of its pretrained ResNet-18, a reference number rather than a re-run.

The ICLR 2023 release's README adds a table of timm DeiT models (top-1 only; no
top-5 or cache published): DeiT-Ti trained from scratch on ImageNet-1k with the
DeiT recipe (72.1 plain; 72.5 / 72.4 / 72.1 at γ = 0.5 / 0.6 / 0.7) and DeiT-S /
DeiT-B fine-tuned on CIFAR-100 at 224x224 (89.7 -> 90.1 and 90.8 -> 91.3 at
γ = 0.9). Those rows are in table ``"iclr"``, carry ``dataset`` and
``show_gamma`` (the table names each row's γ), and :data:`ALL_ROWS` holds both.
"""
from __future__ import annotations

TABLES = ("cifar100", "imagenet", "iclr")
TABLE_TITLES = {"cifar100": "CIFAR-100", "imagenet": "ImageNet-1k", "iclr": "ICLR 2023 release: DeiT (timm)"}


def _row(table, model, dropit, top1, top5, cache_mb, model_name, image_size, family):
    gamma = (0.8 if family == "resnet18" else 0.9) if dropit else None
    return {
        "id": f"{table}_{family}" + ("_dropit" if dropit else ""),
        "table": table,
        "model": model,
        "dropit": dropit,
        "gamma": gamma,
        "top1": top1,
        "top5": top5,
        "cache_mb": cache_mb,
        "model_name": model_name,
        "image_size": image_size,
    }


PAPER_ROWS: list[dict] = [
    _row("cifar100", "ResNet-18 (32x32)", False, 77.96, 94.05, 648, "resnet18_cifar", 32, "resnet18"),
    _row("cifar100", "ResNet-18 (32x32)", True, 78.17, 94.19, 598, "resnet18_cifar", 32, "resnet18"),
    _row("cifar100", "ViT-B/16 (224x224)", False, 90.32, 98.88, 20290, "vit_b_16", 224, "vit_b16"),
    _row("cifar100", "ViT-B/16 (224x224)", True, 90.90, 99.02, 16052, "vit_b_16", 224, "vit_b16"),
    _row("imagenet", "ResNet-18 (224x224)", False, 69.76, 89.08, 2826, "resnet18", 224, "resnet18"),
    _row("imagenet", "ResNet-18 (224x224)", True, 69.85, 89.39, 2600, "resnet18", 224, "resnet18"),
    _row("imagenet", "ViT-B/16 (224x224)", False, 83.40, 96.96, 20290, "vit_b_16", 224, "vit_b16"),
    _row("imagenet", "ViT-B/16 (224x224)", True, 83.61, 97.01, 16056, "vit_b_16", 224, "vit_b16"),
]


def _iclr(dataset, model, model_name, gamma, top1):
    suffix = "" if gamma is None else "_dropit" + (f"{round(gamma * 10):02d}" if dataset == "imagenet" else "")
    return {
        "id": f"iclr_{dataset}_{model_name}{suffix}",
        "table": "iclr",
        "model": model,
        "dropit": gamma is not None,
        "gamma": gamma,
        "top1": top1,
        "top5": None,
        "cache_mb": None,
        "model_name": model_name,
        "image_size": 224,
        "dataset": dataset,
        "show_gamma": True,
    }


_TI, _S, _B = "DeiT-Ti, ImageNet-1k from scratch", "DeiT-S, CIFAR-100 fine-tuned", "DeiT-B, CIFAR-100 fine-tuned"
ICLR_ROWS: list[dict] = [
    _iclr("imagenet", _TI, "deit_tiny", None, 72.1),
    _iclr("imagenet", _TI, "deit_tiny", 0.5, 72.5),
    _iclr("imagenet", _TI, "deit_tiny", 0.6, 72.4),
    _iclr("imagenet", _TI, "deit_tiny", 0.7, 72.1),
    _iclr("cifar100", _S, "deit_small", None, 89.7),
    _iclr("cifar100", _S, "deit_small", 0.9, 90.1),
    _iclr("cifar100", _B, "deit_base", None, 90.8),
    _iclr("cifar100", _B, "deit_base", 0.9, 91.3),
]
ALL_ROWS: list[dict] = PAPER_ROWS + ICLR_ROWS


def table_rows(table: str) -> list[dict]:
    """The rows of one table, in the paper's order."""
    return [r for r in ALL_ROWS if r["table"] == table]


def paper_row(row_id: str) -> dict:
    """The row with this id, e.g. ``"cifar100_resnet18_dropit"`` or ``"iclr_imagenet_deit_tiny_dropit05"``."""
    for row in ALL_ROWS:
        if row["id"] == row_id:
            return row
    raise KeyError(f"no paper row {row_id!r}; ids: {[r['id'] for r in ALL_ROWS]}")
