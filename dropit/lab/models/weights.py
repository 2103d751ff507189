"""Pretrained weights by name: found in a cache folder, else downloaded there and hash-verified.

    resolve_weights("torchvision:ViT_B_16_Weights.IMAGENET1K_V1")   # <cache>/vit_b_16-c867db91.pth
    resolve_weights("timm:deit_small_patch16_224.fb_in1k", cache_dir="/disk/weights", download=False)
    resolve_weights("weights/my_vit.pth")                          # a local file, as given

A parameter file's ``pretrained`` is one of:

    torchvision:<Enum>.<member>       the file torchvision publishes for that entry (``torchvision.models.get_weight``)
    timm:<model>.<tag>                the file timm's pretrained configuration names (its ``url``)
    https://host/<stem>-<hex>.<ext>   any file named in torch.hub's convention
    anything else                     a local state_dict file

Verification: a remote file must be named ``<stem>-<first hex digits of its
SHA-256>.<ext>``, torch.hub's convention, which torchvision's files and the DeiT
authors' files follow. The download is checked against that prefix (8 hex digits
for these files: a check against corruption and truncation, not a cryptographic
pin). A remote file without one is refused: nothing offline could vouch for it
(download it yourself and give its path).

Cache: ``cache_dir`` (the run parameter ``weights_dir``), else ``$DROPIT_WEIGHTS``,
else torch.hub's folder, ``$TORCH_HOME/hub/checkpoints`` (by default
``~/.cache/torch/hub/checkpoints``): files torchvision or torch.hub fetched before
are found there under the same names.

Downloads go through :func:`dropit.lab.download.fetch`, as the datasets'
do: a connection probe, a temporary folder in the cache, torch.hub's transfer (a
tqdm progress bar and the SHA-256 check), one rename into place. Interrupted or
corrupted, nothing is left behind. Offline, or with ``download=False``,
:class:`WeightsMissing` names the weights, the path looked at and how to supply them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from dropit.lab import download as dl

SCHEMES = ("torchvision:", "timm:", "https://", "http://")
MIN_HASH_DIGITS = 8
ENV = "DROPIT_WEIGHTS"
EXAMPLES = "torchvision:ViT_B_16_Weights.IMAGENET1K_V1 or timm:deit_small_patch16_224.fb_in1k"


class WeightsMissing(dl.Missing):
    """Pretrained weights are not where they are expected; the message says where and how to supply them."""


@dataclass(frozen=True)
class Remote:
    """A published weights file: the name it was asked by, its address and the SHA-256 prefix it must have."""

    spec: str
    url: str
    sha256_prefix: str

    @property
    def file(self) -> str:
        return Path(urlparse(self.url).path).name


def is_remote(spec: str | os.PathLike) -> bool:
    return isinstance(spec, str) and spec.startswith(SCHEMES)


def cache_dir_of(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$DROPIT_WEIGHTS``, else torch.hub's ``<hub dir>/checkpoints``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _sha256_prefix(url: str) -> str:
    import torch.hub

    match = torch.hub.HASH_REGEX.search(Path(urlparse(url).path).name)
    return match.group(1) if match and len(match.group(1)) >= MIN_HASH_DIGITS else ""


def _torchvision_url(name: str) -> str:
    from torchvision.models import get_weight

    try:
        return get_weight(name).url
    except (ValueError, KeyError, AttributeError) as e:
        raise ValueError(f"torchvision has no weights {name!r} ({e}); names look like "
                         f"ViT_B_16_Weights.IMAGENET1K_V1 (see torchvision.models.get_weight)") from None


def _timm_url(name: str) -> str:
    try:
        import timm.models
    except ImportError as e:
        raise ValueError(f"timm:{name} needs timm: pip install 'dropit[lab]' (or pip install timm)") from e
    cfg = timm.models.get_pretrained_cfg(name) if "." in name else None
    if cfg is None:
        raise ValueError(f"timm has no pretrained weights {name!r}; give <model>.<tag>, e.g. "
                         f"deit_small_patch16_224.fb_in1k (see timm.list_pretrained())")
    if not cfg.url:
        raise ValueError(f"timm's {name!r} is published on the Hugging Face hub only, under a name without a hash "
                         f"to verify; download it yourself and give the file's path")
    return cfg.url


def remote(spec: str) -> Remote:
    """Where the named weights are published (no network: torchvision's and timm's own tables); ValueError if unknown."""
    scheme, _, name = spec.partition(":")
    url = {"torchvision": _torchvision_url, "timm": _timm_url}.get(scheme, lambda _: spec)(name)
    prefix = _sha256_prefix(url)
    if not prefix:
        raise ValueError(f"pretrained weights {spec!r}: the file {url} carries no SHA-256 prefix in its name "
                         f"(<stem>-<hex>.<ext>), so its download cannot be verified; download it yourself and give "
                         f"its path")
    return Remote(spec, url, prefix)


def weights_path(spec: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the weights are, or would be once downloaded (a local path: itself)."""
    return cache_dir_of(cache_dir) / remote(spec).file if is_remote(spec) else Path(spec).expanduser()


def _help(r: Remote, dest: Path) -> str:
    return (f"pretrained weights {r.spec} not found: expected {dest}. Fetch them with download=true (the default) "
            f"where there is internet, or download {r.url} into {dest.parent} yourself (weights_dir or "
            f"${ENV} choose that folder), or set pretrained to the path of a local state_dict file.")


def _download(r: Remote, folder: Path) -> Path:
    """Transfer ``r`` into ``folder`` with torch.hub (tqdm progress bar, SHA-256 prefix checked)."""
    from torch.hub import download_url_to_file

    dst = folder / r.file
    download_url_to_file(r.url, str(dst), hash_prefix=r.sha256_prefix, progress=True)
    return dst


def source(r: Remote) -> dl.Source:
    """The download of ``r`` as :func:`dropit.lab.download.fetch` takes it."""
    return dl.Source(f"pretrained weights {r.spec}", r.file, lambda: r.url, lambda folder: _download(r, folder),
                     (), file=True, error=WeightsMissing)


def resolve_weights(spec: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                    download: bool = True) -> Path:
    """The local file holding ``spec``'s weights, downloaded into the cache first if needed and allowed.

    Raises WeightsMissing (absent, and not downloadable here) or ValueError (a name nobody publishes).
    """
    if not is_remote(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise WeightsMissing(f"pretrained weights file not found: {path}. Give the path of a local state_dict "
                                 f"file, or name published weights to download, e.g. {EXAMPLES}.")
        return path
    r = remote(str(spec))
    root = cache_dir_of(cache_dir)
    return dl.fetch(source(r), root, download=download, help=_help(r, root / r.file))
