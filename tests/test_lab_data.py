"""Dataset readers on generated official-format files (both key types) and on the real data."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dropit.lab.data import datasets as D
from dropit.lab.train.config import RunConfig
from lab_fakes import write_cifar100, write_image_folder

REAL = Path(os.environ.get("DROPIT_DATA", "")) if os.environ.get("DROPIT_DATA") else None


@pytest.mark.parametrize("bytes_keys", [False, True], ids=["str-keys", "bytes-keys"])
def test_cifar_reader_matches_the_official_layout(tmp_path, bytes_keys):
    folder = write_cifar100(tmp_path, n_train=50, n_test=20, bytes_keys=bytes_keys)
    with open(folder / "train", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    keys = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
    images, labels = D.read_cifar100(folder, "train")
    assert images.shape == (50, 3, 32, 32) and images.dtype == np.uint8
    # row = 1024 R, then 1024 G, then 1024 B values of a row-major 32x32 image
    for c in range(3):
        np.testing.assert_array_equal(images[7, c], keys["data"][7, c * 1024:(c + 1) * 1024].reshape(32, 32))
    assert labels.tolist() == keys["fine_labels"]
    test_images, _ = D.read_cifar100(folder, "test")
    assert len(test_images) == 20
    assert D.read_cifar100_classes(folder)[:2] == ["class_0", "class_1"]


def test_cifar_missing_names_expected_path_and_how_to_get_it(tmp_path):
    with pytest.raises(D.DatasetMissing) as e:
        D.ensure_cifar100(tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / "cifar-100-python") in msg and "cifar-100-python.tar.gz" in msg and "DROPIT_DATA" in msg


def test_downloader_not_called_when_folder_present(tmp_path, monkeypatch):
    import torchvision.datasets

    write_cifar100(tmp_path, n_train=10, n_test=10)
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", lambda *a, **k: pytest.fail("downloader called"))
    assert D.ensure_cifar100(tmp_path, download=True) == tmp_path / "cifar-100-python"


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("DROPIT_DATA", str(tmp_path / "env"))
    assert D.resolve_data_dir(str(tmp_path / "param")) == tmp_path / "param"
    assert D.resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("DROPIT_DATA")
    assert D.resolve_data_dir(None) == Path("data")


def test_balanced_subset_is_balanced_and_deterministic():
    targets = [i % 7 for i in range(700)][::-1] + [0] * 50  # class 0 over-represented
    idx = D.balanced_subset(targets, 30)
    assert idx == D.balanced_subset(targets, 30)
    counts = np.bincount([targets[i] for i in idx], minlength=7)
    assert counts.sum() == 30 and counts.max() - counts.min() <= 1
    assert len(set(idx)) == 30
    assert D.balanced_subset(targets, 10_000) == list(range(len(targets)))


def test_cifar_train_transform_is_pad_crop_flip_normalise():
    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    mean, std = D.CIFAR100_MEAN, D.CIFAR100_STD
    tf = D.CifarTrainTransform(mean, std)
    padded = torch.nn.functional.pad(img.float()[None] / 255, (4,) * 4, mode="reflect")[0]
    windows = {}
    for top in range(9):
        for left in range(9):
            w = padded[:, top:top + 32, left:left + 32]
            windows[(top, left, False)] = w
            windows[(top, left, True)] = w.flip(-1)
    seen = set()
    for _ in range(60):
        out = tf(img)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
        x = out * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
        match = [k for k, w in windows.items() if torch.allclose(x, w, atol=1e-5)]
        assert match, "output is not a (flipped) 32x32 window of the reflect-padded image"
        seen.add(match[0])
    assert len({k[2] for k in seen}) == 2 and len(seen) > 10  # flips and crops both vary


def test_build_datasets_cifar_with_subsets(tmp_path):
    write_cifar100(tmp_path, n_train=400, n_test=300)
    cfg = RunConfig(dataset="cifar100", data_dir=str(tmp_path), subset=200, val_subset=100)
    train, val, classes = D.build_datasets(cfg)
    assert classes == 100 and len(train) == 200 and len(val) == 100
    assert np.bincount(D.targets_of(train), minlength=100).tolist() == [2] * 100
    x, y = val[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    torch.testing.assert_close(val[0][0], val[0][0])  # evaluation transform is deterministic


def test_build_datasets_image_folder_and_resolution(tmp_path):
    write_image_folder(tmp_path, "imagenette", classes=3, per_class=4, size=48)
    cfg = RunConfig(dataset="imagenette", data_dir=str(tmp_path), image_size=32, subset=6)
    train, val, classes = D.build_datasets(cfg)
    assert classes == 3 and len(train) == 6 and len(val) == 12
    assert np.bincount(D.targets_of(train)).tolist() == [2, 2, 2]
    assert train[0][0].shape == (3, 32, 32) and val[0][0].shape == (3, 32, 32)


def test_missing_imagenet_names_the_expected_path(tmp_path):
    cfg = RunConfig(dataset="imagenet", data_dir=str(tmp_path))
    with pytest.raises(D.DatasetMissing) as e:
        D.build_datasets(cfg)
    assert str(tmp_path / "imagenet" / "train") in str(e.value)


# ---------------------------------------------------------------- real data

def _real(sub: str) -> Path:
    if REAL is None:
        pytest.skip("DROPIT_DATA is not set: the real-data checks need CIFAR-100 / Imagenette (see ../shared/data)")
    if not (REAL / sub).is_dir():
        pytest.skip(f"{REAL / sub} is absent")
    return REAL / sub


def test_real_cifar100():
    folder = _real("cifar-100-python")
    images, labels = D.read_cifar100(folder, "train")
    assert images.shape == (50000, 3, 32, 32)
    assert labels[:5].tolist() == [19, 29, 0, 11, 1]  # the official order
    mean = images.reshape(50000, 3, -1).mean(axis=(0, 2)) / 255
    np.testing.assert_allclose(mean, D.CIFAR100_MEAN, atol=1e-3)
    test_images, test_labels = D.read_cifar100(folder, "test")
    assert test_images.shape == (10000, 3, 32, 32) and np.bincount(test_labels).tolist() == [100] * 100
    assert len(D.read_cifar100_classes(folder)) == 100


def test_real_imagenette():
    _real("imagenette")
    cfg = RunConfig(dataset="imagenette", data_dir=str(REAL), image_size=64, subset=20, val_subset=10)
    train, val, classes = D.build_datasets(cfg)
    assert classes == 10 and len(train) == 20 and len(val) == 10
    assert train[0][0].shape == (3, 64, 64) and val[3][0].shape == (3, 64, 64)
