"""Small datasets in the official on-disk formats and stand-ins of published weights files, generated for the lab
tests; where the real CIFAR-100 is."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def real_cifar100_root() -> str:
    """The data root holding the real ``cifar-100-python/`` ($DROPIT_DATA, ../shared/data, ./data), else skip."""
    import pytest

    for p in (os.environ.get("DROPIT_DATA"), ROOT.parent / "shared" / "data", ROOT / "data"):
        if p and (Path(p) / "cifar-100-python" / "train").is_file():
            return str(Path(p).resolve())
    pytest.skip("CIFAR-100 not found (set DROPIT_DATA)")


def write_cifar100(root: Path, n_train: int = 300, n_test: int = 200, bytes_keys: bool = False, seed: int = 0) -> Path:
    """Write ``<root>/cifar-100-python/{train,test,meta}`` like the official archive; returns the folder.

    Labels cycle through the 100 classes; images are random but the first
    channel of image i carries a constant ramp so tests can check the layout.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)

    def key(k: str):
        return k.encode() if bytes_keys else k

    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(i % 100) for i in rng.permutation(n)]
        d = {
            key("data"): data,
            key("fine_labels"): labels,
            key("coarse_labels"): [lab // 5 for lab in labels],
            key("filenames"): [f"img_{i}.png".encode() if bytes_keys else f"img_{i}.png" for i in range(n)],
            key("batch_label"): f"{split} batch",
        }
        with open(folder / split, "wb") as f:
            pickle.dump(d, f)
    names = [f"class_{i}" for i in range(100)]
    meta = {key("fine_label_names"): [n.encode() for n in names] if bytes_keys else names,
            key("coarse_label_names"): [f"super_{i}" for i in range(20)]}
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f)
    return folder


def write_image_folder(root: Path, name: str = "imagenette", classes: int = 3, per_class: int = 4, size: int = 48) -> Path:
    """``<root>/<name>/{train,val}/<class>/*.JPEG`` with small random JPEGs; returns ``<root>/<name>``."""
    from PIL import Image

    rng = np.random.default_rng(1)
    base = Path(root) / name
    for split in ("train", "val"):
        for c in range(classes):
            d = base / split / f"n{c:08d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, size=(size, size + 8, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"img_{i}.JPEG")
    return base


# what each published file holds: the architecture it was trained as (1000 ImageNet classes) and its format
PUBLISHED_WEIGHTS = {
    "torchvision:ViT_B_16_Weights.IMAGENET1K_V1": ("vit_b_16", None),  # a bare state_dict
    "timm:deit_small_patch16_224.fb_in1k": ("deit_small", "model"),  # the DeiT authors' {"model": state_dict}
    "timm:deit_base_patch16_224.fb_in1k": ("deit_base", "model"),
}


def fake_published_weights(spec: str, path) -> None:
    """A file with the published one's keys, shapes (224x224, 1000 classes) and format; values are stand-ins."""
    import torch

    from dropit.lab.models.catalog import build_model

    arch, wrapper = PUBLISHED_WEIGHTS[spec]
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in build_model(arch, 1000, image_size=224).state_dict().items()}
    # one small stored row per tensor, broadcast to its shape: the file stays small whatever the model's size
    state = {k: (torch.randn(s[-1]) * 0.02).expand(s) if len(s) else torch.zeros(()) for k, s in shapes.items()}
    torch.save({wrapper: state} if wrapper else state, path)
