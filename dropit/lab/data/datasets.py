"""Datasets from one data root: CIFAR-100 (official python format), ImageNet and Imagenette.

The root is the ``data_dir`` parameter, else ``$DROPIT_DATA``, else ``./data``::

    <root>/cifar-100-python/{train,test,meta}     the official pickles, read here
    <root>/imagenet/{train,val}/<wnid>/*.JPEG      ImageFolder layout
    <root>/imagenette/{train,val}/<wnid>/*.JPEG    the same, 10 classes

CIFAR-100 and Imagenette are downloaded into the root when absent (torchvision's
downloaders, atomically: see :mod:`dropit.lab.download`) unless ``download`` is
false; ImageNet never is.

Augmentation follows the paper: CIFAR at 32x32 reflect-pads 4, crops 32 at
random, flips, and normalises per channel; everything else (ImageNet, or CIFAR
upsampled for ViT) uses RandomResizedCrop + flip for training and
Resize(256/224 * res) + CenterCrop(res) for evaluation.

``subset=n`` keeps a deterministic, class-balanced part: the first
``n // classes`` images of every class in the dataset's order (one more for
the first ``n % classes`` classes).
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from dropit.lab import download as dl
from dropit.lab.download import DatasetMissing
from dropit.lab.models.catalog import default_image_size

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

# Each dataset's classes and training images: the one table of them (the dry run, the Cache column, the bench)
NUM_CLASSES = {"cifar100": 100, "imagenet": 1000, "imagenette": 10}
TRAIN_IMAGES = {"cifar100": 50_000, "imagenet": 1_281_167, "imagenette": 9_469}

CIFAR_FOLDER = "cifar-100-python"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir``, else ``$DROPIT_DATA``, else ``./data``."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("DROPIT_DATA")
    return Path(env).expanduser() if env else Path("data")


# ---------------------------------------------------------------- CIFAR-100


def _get(d: dict, key: str) -> Any:
    """A value from a pickled CIFAR dict whether its keys are str or bytes."""
    if key in d:
        return d[key]
    bkey = key.encode()
    if bkey in d:
        return d[bkey]
    raise KeyError(f"key {key!r} not in CIFAR file (keys: {sorted(map(str, d))})")


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def read_cifar100(folder: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and fine labels (N,) int64 of ``split`` ("train" or "test")."""
    if split not in ("train", "test"):
        raise ValueError(f"CIFAR-100 split must be 'train' or 'test', got {split!r}")
    path = Path(folder) / split
    if not path.is_file():
        raise DatasetMissing(_cifar_help(Path(folder)))
    d = _unpickle(path)
    data = np.asarray(_get(d, "data"), dtype=np.uint8)
    labels = np.asarray(_get(d, "fine_labels"), dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"{path}: expected data (N, 3072) and N labels, got {data.shape} and {len(labels)}")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar100_classes(folder: str | os.PathLike) -> list[str]:
    """The 100 fine label names from ``meta`` (names as str)."""
    names = _get(_unpickle(Path(folder) / "meta"), "fine_label_names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _cifar_help(folder: Path) -> str:
    return (
        f"CIFAR-100 not found: expected the official python files at {folder}/{{train,test,meta}}. "
        f"Get cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it "
        f"into {folder.parent}, or run with download=true (the default) where there is internet, or point "
        f"data_dir / $DROPIT_DATA at the folder that contains {CIFAR_FOLDER}/."
    )


def ensure_cifar100(root: Path, download: bool = True) -> Path:
    """The CIFAR-100 folder under ``root``; downloaded with torchvision first if absent and ``download``."""
    return dl.fetch(dl.CIFAR100, root, download=download, help=_cifar_help(root / CIFAR_FOLDER))


class CIFAR100(Dataset):
    """CIFAR-100 held in memory as uint8; ``transform`` maps a (3, 32, 32) uint8 tensor to a float image."""

    def __init__(self, folder: str | os.PathLike, split: str, transform=None):
        images, labels = read_cifar100(folder, split)
        self.images = torch.from_numpy(images)  # (N, 3, 32, 32) uint8
        self.targets = labels.tolist()
        self.transform = transform
        self.classes = [str(i) for i in range(100)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        img = self.images[i]
        return (self.transform(img) if self.transform else img), self.targets[i]

    def restrict(self, classes: range) -> "CIFAR100":
        """Only the images of ``classes``, relabelled 0..len(classes)-1 in order (in place; returns self)."""
        labels = torch.tensor(self.targets)
        keep = (labels >= classes.start) & (labels < classes.stop)
        self.images = self.images[keep]
        self.targets = (labels[keep] - classes.start).tolist()
        self.classes = [self.classes[c] for c in classes]
        return self


class CifarTrainTransform:
    """Reflect-pad 4, random 32x32 crop, horizontal flip, per-channel mean/std (uint8 -> float)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], pad: int = 4):
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.pad = pad

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        x = img.float().div_(255)  # (3, 32, 32)
        h, w = x.shape[-2:]
        x = F.pad(x[None], (self.pad,) * 4, mode="reflect")[0]  # (3, 40, 40)
        top, left = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        x = x[:, top : top + h, left : left + w]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return (x - self.mean) / self.std


class Normalize:
    """uint8 or float [0, 1] tensor -> (x - mean) / std."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        x = img.float().div(255) if img.dtype == torch.uint8 else img.float()
        return (x - self.mean) / self.std


# ---------------------------------------------------------------- transforms


def mean_std(dataset: str, choice: str = "dataset") -> tuple[tuple[float, ...], tuple[float, ...]]:
    if choice == "half":
        return HALF
    if choice == "imagenet" or dataset != "cifar100":
        return IMAGENET_MEAN, IMAGENET_STD
    return CIFAR100_MEAN, CIFAR100_STD


def resized_transforms(image_size: int, mean, std, scale_min: float = 0.08, pil: bool = True):
    """(train, eval): RandomResizedCrop + flip; Resize(256/224 * res) + CenterCrop(res)."""
    from torchvision.transforms import v2

    resize = round(image_size * 256 / 224)
    to_float = [v2.PILToTensor()] if pil else []
    to_float += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    train = v2.Compose(
        [v2.RandomResizedCrop(image_size, scale=(scale_min, 1.0), antialias=True), v2.RandomHorizontalFlip()]
        + to_float
    )
    if not pil and image_size == 32:  # CIFAR at native size: nothing to resize
        evaluate = v2.Compose(to_float)
    else:
        evaluate = v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(image_size)] + to_float)
    return train, evaluate


# ---------------------------------------------------------------- ImageNet-style folders


def _folder_help(root: Path, name: str, split: str) -> str:
    where = f"{name} not found: expected an ImageFolder tree at {root / name / split}/<class>/*.JPEG " \
            f"(with {root / name}/train and {root / name}/val). "
    if name == "imagenette":
        return where + (
            f"Get imagenette2-160.tgz from https://github.com/fastai/imagenette and extract it as {root / name}, "
            f"or run with download=true (the default) where there is internet, or point data_dir / $DROPIT_DATA "
            f"at the folder that contains {name}/."
        )
    return where + (
        f"ImageNet cannot be downloaded automatically: get ILSVRC2012 from https://image-net.org, arrange "
        f"train/ and val/ one folder per class, and point data_dir / $DROPIT_DATA at the folder that contains {name}/."
    )


def ensure_imagenette(root: Path, download: bool = True) -> Path:
    """The Imagenette folder under ``root``; torchvision's 160px Imagenette downloaded first if absent and ``download``."""
    return dl.fetch(dl.IMAGENETTE, root, download=download, help=_folder_help(root, "imagenette", "train"))


def ensure_dataset(dataset: str, root: Path, download: bool = True) -> Path:
    """The folder of ``dataset`` under ``root`` (downloading CIFAR-100 or Imagenette if allowed); DatasetMissing if absent."""
    if dataset == "cifar100":
        return ensure_cifar100(root, download)
    if dataset == "imagenette":
        return ensure_imagenette(root, download)
    if not (root / dataset / "train").is_dir():
        raise DatasetMissing(_folder_help(root, dataset, "train"))
    return root / dataset


def image_folder(root: Path, name: str, split: str, transform=None):
    """``<root>/<name>/<split>`` as a torchvision ImageFolder; DatasetMissing if absent."""
    from torchvision.datasets import ImageFolder

    path = root / name / split
    if not path.is_dir():
        raise DatasetMissing(_folder_help(root, name, split))
    return ImageFolder(str(path), transform=transform)


# ---------------------------------------------------------------- subsets and the entry point


def balanced_subset(targets: Sequence[int], n: int | None) -> list[int]:
    """Indices of a class-balanced, deterministic part of ``n`` samples (all if n is None or too big)."""
    targets = list(targets)
    if n is None or n >= len(targets):
        return list(range(len(targets)))
    classes = sorted(set(targets))
    per, extra = divmod(n, len(classes))
    quota = {c: per + (1 if i < extra else 0) for i, c in enumerate(classes)}
    chosen = []
    for i, t in enumerate(targets):
        if quota[t] > 0:
            quota[t] -= 1
            chosen.append(i)
    return chosen


def class_range(spec: str, dataset: str) -> range:
    """The classes of ``"A-B"`` (inclusive) as a range; ValueError naming the problem."""
    if dataset != "cifar100":
        raise ValueError(f"a class range applies to cifar100 only, got dataset {dataset!r}")
    try:
        lo, hi = (int(v) for v in str(spec).split("-"))
    except ValueError:
        raise ValueError(f"expected 'A-B' (first and last class, inclusive), got {spec!r}") from None
    if not 0 <= lo <= hi < NUM_CLASSES[dataset]:
        raise ValueError(f"{spec!r} is not within 0-{NUM_CLASSES[dataset] - 1} with A <= B")
    return range(lo, hi + 1)


def targets_of(ds) -> list[int]:
    """Labels of a dataset or Subset, in order, without loading images."""
    if isinstance(ds, Subset):
        inner = targets_of(ds.dataset)
        return [inner[i] for i in ds.indices]
    return list(ds.targets)


def build_datasets(cfg) -> tuple[Dataset, Dataset, int]:
    """(train, val, num_classes) for a RunConfig, with its transforms and subsets."""
    root = resolve_data_dir(cfg.data_dir)
    size = cfg.image_size or default_image_size(cfg.model, cfg.dataset)
    mean, std = mean_std(cfg.dataset, cfg.mean_std)
    folder = ensure_dataset(cfg.dataset, root, cfg.download)
    if cfg.dataset == "cifar100":
        if size == 32:
            train_tf, eval_tf = CifarTrainTransform(mean, std), Normalize(mean, std)
        else:
            train_tf, eval_tf = resized_transforms(size, mean, std, cfg.crop_scale_min, pil=False)
        train = CIFAR100(folder, "train", train_tf)
        val = CIFAR100(folder, "test", eval_tf)
        num_classes = NUM_CLASSES["cifar100"]
        if cfg.classes is not None:
            chosen = class_range(cfg.classes, cfg.dataset)
            train, val, num_classes = train.restrict(chosen), val.restrict(chosen), len(chosen)
    else:
        train_tf, eval_tf = resized_transforms(size, mean, std, cfg.crop_scale_min, pil=True)
        train = image_folder(root, cfg.dataset, "train", train_tf)
        val = image_folder(root, cfg.dataset, "val", eval_tf)
        num_classes = len(train.classes)
    if cfg.subset is not None:
        train = Subset(train, balanced_subset(targets_of(train), cfg.subset))
    if cfg.val_subset is not None:
        val = Subset(val, balanced_subset(targets_of(val), cfg.val_subset))
    return train, val, num_classes
