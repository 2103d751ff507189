"""Fetch a missing dataset (or file) into its root: all of it, verified, or nothing.

    fetch(CIFAR100, root, help="...")      # <root>/cifar-100-python/{train,test,meta}
    fetch(IMAGENETTE, root, help="...")    # <root>/imagenette/{train,val}/<wnid>/*.JPEG (160px)

The same mechanism fetches pretrained weights (a :class:`Source` with
``file=True`` and ``error=WeightsMissing``, see :mod:`dropit.lab.models.weights`).

torchvision does the transfer (a tqdm progress bar) and checks the archive's MD5
(and, for CIFAR-100, each extracted file's) into a fresh temporary folder inside
the root. The result is checked for the files the readers need and moved into
place with one rename, so an interrupted, failed or corrupted download leaves
nothing behind, neither a half-written dataset nor the temporary folder.

Offline, a connection probe (a few seconds) fails before anything is written, and
the caller's message (where the data is expected and how to get it) is raised as
the source's error, :class:`DatasetMissing` for datasets (also importable from
:mod:`dropit.lab.data.datasets`). ``download=False`` never touches the network. Under torchrun every process that lacks the data downloads its own
copy; the first rename wins and the others discard theirs.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0  # a stalled transfer fails instead of hanging
IMAGENETTE_SIZE = "160px"  # torchvision's smallest Imagenette; the quick rows train at 64px


class Missing(FileNotFoundError):
    """Something a run needs is not where it is expected; the message says where and how to get it."""


class DatasetMissing(Missing):
    """The dataset is not where it is expected; the message says where and how to get it."""


@dataclass(frozen=True)
class Source:
    """Something that can be downloaded: where it goes and what must be there afterwards."""

    title: str  # for messages
    folder: str  # under the root: the dataset's folder, or the file's name when ``file``
    url: Callable[[], str]  # the archive's address (for the connection probe)
    download: Callable[[Path], Path]  # download into a folder; returns the extracted dataset folder (or file) in it
    required: tuple[str, ...]  # paths that must exist in the dataset folder
    file: bool = False  # a single file rather than a folder
    error: type[Missing] = DatasetMissing  # raised when it is absent and cannot be fetched


def _cifar100_url() -> str:
    from torchvision.datasets import CIFAR100

    return CIFAR100.url


def _cifar100_download(tmp: Path) -> Path:
    from torchvision.datasets import CIFAR100

    CIFAR100(str(tmp), train=True, download=True)  # downloads, checks MD5s, extracts
    return tmp / CIFAR100.base_folder


def _imagenette_url() -> str:
    from torchvision.datasets import Imagenette

    return Imagenette._ARCHIVES[IMAGENETTE_SIZE][0]


def _imagenette_download(tmp: Path) -> Path:
    from torchvision.datasets import Imagenette

    Imagenette(str(tmp), split="train", size=IMAGENETTE_SIZE, download=True)
    return tmp / Path(_imagenette_url()).name.removesuffix(".tgz")  # imagenette2-160/{train,val}


CIFAR100 = Source("CIFAR-100", "cifar-100-python", _cifar100_url, _cifar100_download, ("train", "test", "meta"))
IMAGENETTE = Source(f"Imagenette ({IMAGENETTE_SIZE})", "imagenette", _imagenette_url, _imagenette_download,
                    ("train", "val"))


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


class _read_timeout:
    """Sockets opened inside time out after ``seconds`` without data (urllib's default is never)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        self.before = socket.getdefaulttimeout()
        socket.setdefaulttimeout(self.seconds)

    def __exit__(self, *exc):
        socket.setdefaulttimeout(self.before)


def fetch(source: Source, root: Path, *, download: bool = True, help: str = "") -> Path:
    """``<root>/<source.folder>``, downloaded first if absent and ``download``; else ``source.error(help)``."""
    dest = Path(root) / source.folder
    if dest.is_file() if source.file else dest.is_dir():
        return dest
    if not download:
        raise source.error(help)
    url = source.url()
    if not reachable(url):
        raise source.error(f"cannot download {source.title}: no connection to {urlparse(url).hostname} "
                           f"(offline?). {help}")
    Path(root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{source.folder}.download-", dir=root))  # same file system: rename is atomic
    try:
        with _read_timeout(READ_TIMEOUT_S):
            got = source.download(tmp)
        missing = [p for p in source.required if not (got / p).exists()]
        if missing:
            raise source.error(f"the {source.title} download lacks {', '.join(missing)} in {got.name}/. {help}")
        try:
            os.rename(got, dest)  # a file replaces another process's complete copy atomically
        except OSError:
            if not dest.is_dir():
                raise
            # another process renamed its complete copy into place first
    except Missing:
        raise
    except Exception as e:  # offline after the probe, a corrupted archive, a full disk: nothing is left behind
        raise source.error(f"downloading {source.title} failed ({type(e).__name__}: {e}). {help}") from e
    finally:  # also on KeyboardInterrupt, which propagates
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
