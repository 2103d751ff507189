"""Data that fetches itself, with the network replaced by local fakes (nothing here goes online).

Two levels of fake: the source's download function (what the kit does around a
download: probe, temporary folder, checks, atomic rename, clean-up), and
``urllib.request.urlopen`` serving local bytes, so that torchvision's own
downloader runs for real (progress bar, MD5 checks, extraction) on a small
CIFAR-100 archive built here.
"""
import dataclasses
import hashlib
import io
import tarfile
import urllib.request

import pytest

from dropit.lab.data import datasets as D
from dropit.lab import download as dl
from dropit.lab.train.config import RunConfig
from lab_fakes import write_cifar100, write_image_folder


@pytest.fixture
def online(monkeypatch):
    """The connection probe succeeds (no socket is opened)."""
    probes = []
    monkeypatch.setattr(dl, "reachable", lambda url, timeout=dl.PROBE_TIMEOUT_S: probes.append(url) or True)
    return probes


def _with_download(monkeypatch, source_name: str, fn):
    source = dataclasses.replace(getattr(dl, source_name), download=fn)
    monkeypatch.setattr(dl, source_name, source)
    return source


def _leftovers(root):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_missing_cifar_is_downloaded_into_the_root_and_read(tmp_path, monkeypatch, online):
    calls = []

    def fake(tmp):
        calls.append(tmp)
        assert tmp.parent == tmp_path and tmp.name.startswith(".cifar-100-python.download-")
        (tmp / "cifar-100-python.tar.gz").write_bytes(b"archive")  # as torchvision leaves it
        return write_cifar100(tmp, n_train=100, n_test=50)

    _with_download(monkeypatch, "CIFAR100", fake)
    folder = D.ensure_cifar100(tmp_path)
    assert folder == tmp_path / "cifar-100-python" and len(calls) == 1 and online
    assert _leftovers(tmp_path) == ["cifar-100-python"]  # the temporary folder and archive are gone
    images, labels = D.read_cifar100(folder, "train")
    assert images.shape == (100, 3, 32, 32) and len(labels) == 100
    assert D.ensure_cifar100(tmp_path) == folder and len(calls) == 1  # present: no second download


def test_build_datasets_downloads_imagenette_by_default(tmp_path, monkeypatch, online):
    def fake(tmp):
        return write_image_folder(tmp, "imagenette2-160", classes=2, per_class=3, size=40)

    _with_download(monkeypatch, "IMAGENETTE", fake)
    train, val, classes = D.build_datasets(RunConfig(dataset="imagenette", data_dir=str(tmp_path), image_size=32))
    assert classes == 2 and len(train) == 6 and len(val) == 6
    assert _leftovers(tmp_path) == ["imagenette"]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, ConnectionResetError])
def test_an_interrupted_download_leaves_nothing(tmp_path, monkeypatch, online, interrupt):
    def fake(tmp):
        folder = tmp / "cifar-100-python"
        folder.mkdir()
        (folder / "train").write_bytes(b"half a file")
        raise interrupt("connection lost halfway")

    _with_download(monkeypatch, "CIFAR100", fake)
    if interrupt is KeyboardInterrupt:
        with pytest.raises(KeyboardInterrupt):
            D.ensure_cifar100(tmp_path)
    else:
        with pytest.raises(D.DatasetMissing, match="downloading CIFAR-100 failed.*connection lost") as e:
            D.ensure_cifar100(tmp_path)
        assert str(tmp_path / "cifar-100-python") in str(e.value) and "DROPIT_DATA" in str(e.value)
    assert _leftovers(tmp_path) == []


def test_a_download_missing_files_is_rejected_and_removed(tmp_path, monkeypatch, online):
    def fake(tmp):
        folder = write_cifar100(tmp, n_train=10, n_test=10)
        (folder / "test").unlink()
        return folder

    _with_download(monkeypatch, "CIFAR100", fake)
    with pytest.raises(D.DatasetMissing, match="lacks test"):
        D.ensure_cifar100(tmp_path)
    assert _leftovers(tmp_path) == []


def test_offline_fails_fast_with_the_path_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "reachable", lambda url, timeout=dl.PROBE_TIMEOUT_S: False)
    _with_download(monkeypatch, "CIFAR100", lambda tmp: pytest.fail("downloader called while offline"))
    with pytest.raises(D.DatasetMissing) as e:
        D.ensure_cifar100(tmp_path / "root")
    msg = str(e.value)
    assert msg.startswith("cannot download CIFAR-100: no connection to www.cs.toronto.edu (offline?)")
    assert str(tmp_path / "root" / "cifar-100-python") in msg and "cifar-100-python.tar.gz" in msg
    assert not (tmp_path / "root").exists()  # nothing created


def test_download_false_never_touches_the_network(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "reachable", lambda *a, **k: pytest.fail("probed with download=false"))
    cfg = RunConfig(dataset="imagenette", data_dir=str(tmp_path), download=False)
    with pytest.raises(D.DatasetMissing, match="imagenette not found") as e:
        D.build_datasets(cfg)
    assert str(tmp_path / "imagenette" / "train") in str(e.value) and "download=true" in str(e.value)


def test_a_copy_renamed_into_place_by_another_process_wins(tmp_path, monkeypatch, online):
    def fake(tmp):
        write_cifar100(tmp_path, n_train=10, n_test=10)  # another rank finished first
        return write_cifar100(tmp, n_train=20, n_test=10)

    _with_download(monkeypatch, "CIFAR100", fake)
    folder = D.ensure_cifar100(tmp_path)
    assert len(D.read_cifar100(folder, "train")[1]) == 10 and _leftovers(tmp_path) == ["cifar-100-python"]


# ------------------------------------------------------------------ torchvision's downloader, for real


def _cifar_archive(tmp_path):
    """A small cifar-100-python.tar.gz in the official layout, and the MD5s torchvision should expect."""
    src = write_cifar100(tmp_path / "src", n_train=30, n_test=20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src, arcname="cifar-100-python")
    md5 = {name: hashlib.md5((src / name).read_bytes()).hexdigest() for name in ("train", "test", "meta")}
    return buf.getvalue(), md5


class _Response(io.BytesIO):
    def __init__(self, url, body, fail_after=None):
        super().__init__(body)
        self.url, self.length, self.fail_after = url, len(body), fail_after

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("peer closed the connection")
        return super().read(n)


@pytest.fixture
def local_cifar_server(tmp_path, monkeypatch, online):
    """``urlopen`` answers with a local archive; torchvision expects that archive's MD5s."""
    from torchvision.datasets import CIFAR100

    body, md5 = _cifar_archive(tmp_path)
    state = {"body": body, "fail_after": None, "requests": 0}

    def urlopen(request, *args, **kwargs):
        state["requests"] += 1
        return _Response(request.full_url, state["body"], state["fail_after"])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(CIFAR100, "tgz_md5", hashlib.md5(body).hexdigest())
    monkeypatch.setattr(CIFAR100, "train_list", [["train", md5["train"]]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", md5["test"]]])
    monkeypatch.setattr(CIFAR100, "meta", dict(CIFAR100.meta, md5=md5["meta"]))
    return state


def test_torchvision_download_with_progress_and_checksums(tmp_path, local_cifar_server, capsys):
    root = tmp_path / "data"
    folder = D.ensure_cifar100(root)
    assert folder == root / "cifar-100-python" and _leftovers(root) == ["cifar-100-python"]
    assert len(D.read_cifar100(folder, "test")[1]) == 20
    assert "B/s" in capsys.readouterr().err  # torchvision's tqdm progress bar


def test_torchvision_checksum_mismatch_leaves_nothing(tmp_path, local_cifar_server):
    local_cifar_server["body"] = local_cifar_server["body"][:-10] + b"corrupted!"
    with pytest.raises(D.DatasetMissing, match="downloading CIFAR-100 failed.*corrupted"):
        D.ensure_cifar100(tmp_path / "data")
    assert _leftovers(tmp_path / "data") == []


def test_torchvision_transfer_cut_halfway_leaves_nothing(tmp_path, local_cifar_server):
    local_cifar_server["fail_after"] = len(local_cifar_server["body"]) // 2
    with pytest.raises(D.DatasetMissing, match="ConnectionResetError"):
        D.ensure_cifar100(tmp_path / "data")
    assert _leftovers(tmp_path / "data") == []
    assert local_cifar_server["requests"] >= 2  # a redirect check, then the transfer (torchvision retries over http)
