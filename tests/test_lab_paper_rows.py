"""Every row of the paper preset starts: its own parameter file, one training step on CPU, under stand-ins.

The stand-ins: a generated data root in the official layouts (a few CIFAR-100
images, a two-class ImageFolder for ImageNet), and pretrained weights of the
published files' shapes and formats, served by a fake of the weights' transfer
(the rest of the fetch runs for real: the cache, the rename, the loading with
its head replacement and position-embedding resampling). Only sizes are
overridden (image size, batch, steps), plus what a CPU cannot do (fp16 autocast,
worker processes), so that no row fails for a reason a GPU box with internet
would not have.
"""
import pytest
import torch

from dropit.lab import download as dl
from dropit.lab.models import weights as W
from dropit.lab.paper import TABLES
from dropit.lab.reproduce.rows import resolve, run_row, table_params
from dropit.lab.train.config import load_config
from lab_fakes import PUBLISHED_WEIGHTS, fake_published_weights, write_cifar100, write_image_folder

PAPER_FILES = [f for table in TABLES for f in table_params(table, "paper")]
SIZE_OVERRIDES = ["image_size=32", "batch_size=2", "eval_batch_size=2", "val_subset=2", "cache_batch=2",
                  "max_steps=1", "epochs=1", "num_workers=0", "checkpoint=false", "amp=none", "device=cpu",
                  "log_every=1", "record_every=1"]

@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar100(root, n_train=20, n_test=20)
    write_image_folder(root, "imagenet", classes=2, per_class=2, size=40)
    return root


@pytest.fixture
def fake_transfer(monkeypatch):
    """The weights' transfer serves stand-ins of the published files; the connection probe succeeds."""
    served = []

    def download(r, folder):
        served.append(r.spec)
        fake_published_weights(r.spec, folder / r.file)
        return folder / r.file

    monkeypatch.setattr(dl, "reachable", lambda url, timeout=dl.PROBE_TIMEOUT_S: True)
    monkeypatch.setattr(W, "_download", download)
    return served


def test_the_paper_preset_has_every_row():
    assert len(PAPER_FILES) == 16 and all(resolve(f).is_file() for f in PAPER_FILES)
    named = {load_config(str(resolve(f))).pretrained for f in PAPER_FILES} - {None}
    assert named == set(PUBLISHED_WEIGHTS)  # every fine-tuned row names published weights the fake can stand in for


@pytest.mark.slow
@pytest.mark.parametrize("params_file", PAPER_FILES, ids=[f.split("/")[-1][:-5] for f in PAPER_FILES])
def test_every_paper_row_starts(params_file, data_root, fake_transfer, tmp_path):
    cfg = load_config(str(resolve(params_file)))
    overrides = SIZE_OVERRIDES + [f"data_dir={data_root}", f"weights_dir={tmp_path / 'weights'}"]
    metrics = run_row(params_file, overrides, out_dir=tmp_path / "run", launcher="inprocess")
    assert [r["step"] for r in metrics["per_step"]] == [1]
    assert torch.isfinite(torch.tensor(metrics["per_step"][0]["loss"]))
    if cfg.pretrained:  # fetched through the cache, once
        assert fake_transfer == [cfg.pretrained]
        assert (tmp_path / "weights" / W.remote(cfg.pretrained).file).is_file()
    else:
        assert fake_transfer == []
