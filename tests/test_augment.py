"""The batched crop-and-flip against the per-image reference, and the in-memory loader."""
import torch
import torch.nn.functional as F

from dropit.lab.data.augment import crop_flip, draw_crop_flip, normalize
from dropit.lab.data.datasets import CIFAR100_MEAN, CIFAR100_STD, CifarTrainTransform, Normalize
from dropit.lab.data.tensor_loader import TensorLoader


def _reference(img: torch.Tensor, top: int, left: int, flip: bool, pad: int = 4) -> torch.Tensor:
    """One image the way CifarTrainTransform does it: reflect-pad, cut at (top, left), flip."""
    h, w = img.shape[-2:]
    x = F.pad(img.float()[None], (pad,) * 4, mode="reflect")[0]
    x = x[:, top:top + h, left:left + w]
    return x.flip(-1) if flip else x


def _images(n=64, h=32, w=32, seed=0):
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_equals_the_per_image_reference_at_every_offset_and_flip():
    imgs = _images(n=2 * 81)
    grid = [(t, l, f) for f in (False, True) for t in range(9) for l in range(9)]
    tops, lefts, flips = (torch.tensor(v) for v in zip(*grid))
    out = crop_flip(imgs, tops, lefts, flips)
    assert out.dtype == torch.uint8 and out.shape == imgs.shape
    for b, (t, l, f) in enumerate(grid):
        torch.testing.assert_close(out[b].float(), _reference(imgs[b], t, l, f), rtol=0, atol=0)


def test_non_square_images_and_another_pad():
    imgs = _images(n=6, h=12, w=20)
    tops, lefts, flips = torch.tensor([0, 4, 2, 1, 3, 0]), torch.tensor([4, 0, 3, 2, 1, 4]), torch.tensor([1, 0, 1, 0, 1, 1]).bool()
    out = crop_flip(imgs, tops, lefts, flips, pad=2)
    for b in range(6):
        torch.testing.assert_close(out[b].float(), _reference(imgs[b], int(tops[b]), int(lefts[b]), bool(flips[b]), pad=2),
                                   rtol=0, atol=0)


def test_the_transform_normalised_matches_the_kit_transform():
    # the kit's per-image transform with its own random draw, replayed: same result after normalisation
    imgs = _images(n=8)
    tf = CifarTrainTransform(CIFAR100_MEAN, CIFAR100_STD)
    mean, std = torch.tensor(CIFAR100_MEAN), torch.tensor(CIFAR100_STD)
    for b in range(8):
        torch.manual_seed(b)
        ref = tf(imgs[b])
        torch.manual_seed(b)
        top, left = torch.randint(0, 9, (2,)).tolist()
        flip = bool(torch.rand(()) < 0.5)
        got = normalize(crop_flip(imgs[b:b + 1], torch.tensor([top]), torch.tensor([left]), torch.tensor([flip])), mean, std)
        torch.testing.assert_close(got[0], ref, rtol=1e-6, atol=1e-6)


def test_offsets_are_uniform_on_the_9x9_grid_and_flips_about_half():
    n = 81 * 400
    tops, lefts, flips = draw_crop_flip(n, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(tops * 9 + lefts, minlength=81).double()
    expected = n / 81
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 124.1  # chi-square, 80 dof: the 99.9th percentile is 124.84
    assert int(tops.min()) == 0 and int(tops.max()) == 8 and int(lefts.min()) == 0 and int(lefts.max()) == 8
    frac = float(flips.double().mean())
    assert abs(frac - 0.5) < 4 * (0.25 / n) ** 0.5  # four standard errors


def test_a_batch_of_the_loader_is_the_reference_in_distribution():
    # a constant-colour image with one marked pixel: where the mark lands tells the offset and the flip
    n = 4000
    imgs = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    imgs[:, 0, 16, 10] = 255
    loader = TensorLoader(imgs, torch.zeros(n, dtype=torch.int64), batch_size=n, mean=(0, 0, 0), std=(1, 1, 1), seed=3)
    (x, _), = list(loader)
    hit = (x[:, 0] > 0.5).nonzero()  # (n, 3): image, row, col
    assert len(hit) == n
    rows, cols = hit[:, 1], hit[:, 2]
    # row = 16 - (top - 4), so top - 4 uniform in -4..4
    assert set((16 - rows).tolist()) == set(range(-4, 5))
    shift = torch.bincount(16 - rows + 4, minlength=9).double()
    assert float(((shift - n / 9) ** 2 / (n / 9)).sum()) < 26.1  # chi-square, 8 dof, 99.9th percentile
    flipped = (cols >= 16).double().mean()  # unflipped mark at column 10 - (left - 4) in 6..14, flipped in 17..25
    assert abs(float(flipped) - 0.5) < 0.04


def test_loader_order_is_seeded_and_a_function_of_the_epoch():
    imgs, targets = _images(n=100), torch.arange(100)
    kw = dict(batch_size=32, mean=CIFAR100_MEAN, std=CIFAR100_STD, seed=7)
    a, b = TensorLoader(imgs, targets, **kw), TensorLoader(imgs, targets, **kw)
    assert len(a) == 3  # drop_last when training
    a.set_epoch(2)
    b.set_epoch(2)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    b.set_epoch(3)
    assert not torch.equal(next(iter(a))[1], next(iter(b))[1])
    first = torch.cat([y for _, y in a])
    assert len(set(first.tolist())) == 96  # a permutation, each image once


def test_eval_loader_keeps_order_and_every_image_and_shards_like_ddp():
    imgs, targets = _images(n=50), torch.arange(50)
    ev = TensorLoader(imgs, targets, batch_size=16, mean=CIFAR100_MEAN, std=CIFAR100_STD, train=False)
    assert len(ev) == 4
    xs, ys = zip(*ev)
    assert torch.equal(torch.cat(ys), targets)
    want = torch.stack([Normalize(CIFAR100_MEAN, CIFAR100_STD)(im) for im in imgs])
    torch.testing.assert_close(torch.cat(xs), want)
    shards = [TensorLoader(imgs, targets, batch_size=8, mean=CIFAR100_MEAN, std=CIFAR100_STD, seed=1, rank=r, world=2)
              for r in range(2)]
    seen = [torch.cat([y for _, y in s]) for s in shards]
    assert len(seen[0]) == len(seen[1]) == 24 and not set(seen[0].tolist()) & set(seen[1].tolist())


def test_data_on_device_is_refused_for_other_data():
    import pytest

    from dropit.lab.train.config import ConfigError, RunConfig, validate

    with pytest.raises(ConfigError, match="data_on_device"):
        validate(RunConfig(dataset="imagenette", data_on_device=True))
    with pytest.raises(ConfigError, match="data_on_device"):
        validate(RunConfig(dataset="cifar100", image_size=64, data_on_device=True))


def test_the_loop_trains_from_the_tensor_path(tmp_path):
    from lab_fakes import write_cifar100

    from dropit.lab.train.loop import run

    write_cifar100(tmp_path, n_train=120, n_test=60)
    kw = dict(model="resnet_mini", dataset="cifar100", data_dir=str(tmp_path), download=False, epochs=2, batch_size=40,
              threads=1, log_every=1000, cache_batch=8, data_on_device=True, checkpoint=False, lr=0.05)
    a = run(dict(kw, out_dir=str(tmp_path / "a")))
    b = run(dict(kw, out_dir=str(tmp_path / "b")))
    assert a["final"]["steps"] == 6 and a["final"]["val_images"] == 60
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]
