"""The paper's CIFAR-100 and ImageNet-1k tables (arXiv 2202.13808 v1) as plain data.

Each row of :data:`PAPER_ROWS` is a dict with the keys

    id          short name, equal to the stem of its parameter file in params/
    table       "cifar100" | "imagenet"
    model       display name, e.g. "ResNet-18 (32x32)" (" w. DropIT" is added by the tables)
    dropit      bool
    gamma       the dropping rate used (0.8 for ResNet-18, 0.9 for ViT-B/16) or None
    top1, top5  accuracy in percent
    cache_mb    the paper's "Cache (MB)": CUDA peak allocated bytes / 2**20 over one
                training-mode forward of 128 random fp32 images (weights, input,
                saved tensors and transient buffers together)
    model_name  the :func:`dropit.lab.models.build_model` name of the network
    image_size  input resolution

The ImageNet ResNet-18 baseline (69.76 / 89.08) is torchvision's published
accuracy of its pretrained ResNet-18, a reference number rather than a re-run.
"""
from __future__ import annotations

TABLES = ("cifar100", "imagenet")
TABLE_TITLES = {"cifar100": "CIFAR-100", "imagenet": "ImageNet-1k"}


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


def paper_row(row_id: str) -> dict:
    """The row with this id, e.g. ``"cifar100_resnet18_dropit"``."""
    for row in PAPER_ROWS:
        if row["id"] == row_id:
            return row
    raise KeyError(f"no paper row {row_id!r}; ids: {[r['id'] for r in PAPER_ROWS]}")
