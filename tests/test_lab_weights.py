"""Pretrained weights by name, with the network replaced by a local fake (nothing here goes online).

``torch.hub.urlopen`` serves local bytes, so torch.hub's own transfer runs for
real (progress bar, SHA-256 prefix check) inside the kit's fetch (probe,
temporary folder, one rename into place).
"""
import hashlib
import io
from email.message import Message

import pytest
import torch
import torch.hub

from dropit.lab import download as dl
from dropit.lab.models import weights as W
from dropit.lab.models.catalog import build_model
from dropit.lab.train.config import ConfigError, RunConfig, load_config
from dropit.lab.train.loop import main as train_main
from dropit.lab.train.loop import run

VIT = "torchvision:ViT_B_16_Weights.IMAGENET1K_V1"


@pytest.fixture
def online(monkeypatch):
    probes = []
    monkeypatch.setattr(dl, "reachable", lambda url, timeout=dl.PROBE_TIMEOUT_S: probes.append(url) or True)
    return probes


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------ names -> published files (no network)


def test_names_resolve_to_the_published_files_and_their_hash_prefixes():
    vit = W.remote(VIT)
    assert vit.url == "https://download.pytorch.org/models/vit_b_16-c867db91.pth"
    assert (vit.file, vit.sha256_prefix) == ("vit_b_16-c867db91.pth", "c867db91")
    for size, digest in (("small", "cd65a155"), ("base", "b5f2ef4d")):  # the release README's wget lines
        deit = W.remote(f"timm:deit_{size}_patch16_224.fb_in1k")
        assert deit.url == f"https://dl.fbaipublicfiles.com/deit/deit_{size}_patch16_224-{digest}.pth"
        assert deit.sha256_prefix == digest
    url = "https://example.org/w/tiny-0123abcd.pth"
    assert W.remote(url).sha256_prefix == "0123abcd"


@pytest.mark.parametrize("spec, match", [
    ("torchvision:ViT_B_16_Weights.NOPE", "torchvision has no weights"),
    ("timm:deit_small_patch16_224", "give <model>.<tag>"),
    ("timm:no_such_model.tag", "timm has no pretrained weights"),
    ("https://example.org/w/tiny.pth", "carries no SHA-256 prefix"),
])
def test_unknown_or_unverifiable_names_are_refused(spec, match):
    with pytest.raises(ValueError, match=match):
        W.remote(spec)
    with pytest.raises(ConfigError, match="'pretrained'"):  # before any work: when the parameters are read
        load_config(None, [f"pretrained={spec}"])


def test_the_cache_folder_is_the_parameter_else_the_variable_else_torch_hubs(tmp_path, monkeypatch):
    monkeypatch.delenv(W.ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert W.cache_dir_of() == tmp_path / "torch" / "hub" / "checkpoints"
    monkeypatch.setenv(W.ENV, str(tmp_path / "env"))
    assert W.cache_dir_of() == tmp_path / "env"
    assert W.weights_path(VIT, tmp_path / "param") == tmp_path / "param" / "vit_b_16-c867db91.pth"
    assert W.weights_path("w/local.pth") == W.Path("w/local.pth")


def test_weights_already_in_the_cache_are_used_without_the_network(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "reachable", lambda *a, **k: pytest.fail("probed although the file is there"))
    (tmp_path / "vit_b_16-c867db91.pth").write_bytes(b"x")
    assert W.resolve_weights(VIT, cache_dir=tmp_path) == tmp_path / "vit_b_16-c867db91.pth"


def test_a_local_file_works_as_before_and_a_missing_one_says_how_to_supply_weights(tmp_path):
    path = tmp_path / "mine.pth"
    torch.save(build_model("resnet_mini", 10).state_dict(), path)
    assert W.resolve_weights(str(path)) == path
    build_model("resnet_mini", 10, weights=str(path))
    with pytest.raises(W.WeightsMissing, match="pretrained weights file not found") as e:
        W.resolve_weights(tmp_path / "nope.pth")
    assert "torchvision:" in str(e.value) and "timm:" in str(e.value)


# ------------------------------------------------------------------ torch.hub's transfer against a local server


class _Response(io.BytesIO):
    def __init__(self, body, fail_after=None, interrupt=ConnectionResetError):
        super().__init__(body)
        self.fail_after, self.interrupt = fail_after, interrupt
        self.headers = Message()
        self.headers["Content-Length"] = str(len(body))

    def info(self):
        return self.headers

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise self.interrupt("peer closed the connection")
        return super().read(min(n, 512) if n and n > 0 else 512)  # several chunks: the transfer is cut midway


@pytest.fixture
def server(tmp_path, monkeypatch, online):
    """A small state_dict served at a URL whose name carries its SHA-256 prefix, as published files do."""
    buf = io.BytesIO()
    torch.save(build_model("resnet_mini", 10).state_dict(), buf)
    body = buf.getvalue()
    state = {"body": body, "fail_after": None, "interrupt": ConnectionResetError, "requests": [],
             "url": f"https://example.org/w/mini-{hashlib.sha256(body).hexdigest()[:8]}.pth"}

    def urlopen(request, *args, **kwargs):
        state["requests"].append(request.full_url)
        return _Response(state["body"], state["fail_after"], state["interrupt"])

    monkeypatch.setattr(torch.hub, "urlopen", urlopen)
    return state


def test_download_into_the_cache_with_progress_and_the_hash_checked(tmp_path, server, online, capsys):
    cache = tmp_path / "cache"
    path = W.resolve_weights(server["url"], cache_dir=cache)
    assert path == cache / server["url"].rsplit("/", 1)[1] and _leftovers(cache) == [path.name]
    assert server["requests"] == [server["url"]] and online == [server["url"]]
    assert "B/s" in capsys.readouterr().err  # torch.hub's tqdm progress bar
    model = build_model("resnet_mini", 10, weights=path)
    assert model.fc.weight.shape == (10, 128)
    assert W.resolve_weights(server["url"], cache_dir=cache) == path and len(server["requests"]) == 1


def test_a_wrong_hash_leaves_nothing(tmp_path, server):
    server["body"] = server["body"][:-10] + b"corrupted!"
    with pytest.raises(W.WeightsMissing, match="downloading pretrained weights .* failed .*invalid hash value"):
        W.resolve_weights(server["url"], cache_dir=tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []


@pytest.mark.parametrize("interrupt", [ConnectionResetError, KeyboardInterrupt])
def test_an_interrupted_download_leaves_nothing(tmp_path, server, interrupt):
    server["fail_after"], server["interrupt"] = len(server["body"]) // 2, interrupt
    expected = KeyboardInterrupt if interrupt is KeyboardInterrupt else W.WeightsMissing
    with pytest.raises(expected):
        W.resolve_weights(server["url"], cache_dir=tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []


def test_offline_fails_fast_with_the_path_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "urlopen", lambda *a, **k: pytest.fail("transfer started while offline"))
    with pytest.raises(W.WeightsMissing) as e:  # conftest: the probe finds no network
        W.resolve_weights(VIT, cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert msg.startswith(f"cannot download pretrained weights {VIT}: no connection to download.pytorch.org (offline?)")
    assert str(tmp_path / "cache" / "vit_b_16-c867db91.pth") in msg
    assert "https://download.pytorch.org/models/vit_b_16-c867db91.pth" in msg and "weights_dir" in msg
    assert not (tmp_path / "cache").exists()


def test_download_false_never_touches_the_network(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "reachable", lambda *a, **k: pytest.fail("probed with download=false"))
    with pytest.raises(W.WeightsMissing, match=f"pretrained weights {VIT} not found: expected "):
        W.resolve_weights(VIT, cache_dir=tmp_path, download=False)


# ------------------------------------------------------------------ a run


def test_a_run_stops_on_missing_weights_before_any_work(tmp_path, capsys):
    cfg = RunConfig(model="resnet18", dataset="imagenet", data_dir=str(tmp_path / "no-data"), download=False,
                    pretrained="torchvision:ResNet18_Weights.IMAGENET1K_V1", weights_dir=str(tmp_path / "w"),
                    out_dir=str(tmp_path / "run"), epochs=1)
    with pytest.raises(W.WeightsMissing, match="resnet18-f37072fd.pth"):  # not the missing ImageNet
        run(cfg)
    assert not (tmp_path / "run").exists()
    assert train_main([f"{k}={v}" for k, v in cfg.to_dict().items() if k in (
        "model", "dataset", "data_dir", "download", "pretrained", "weights_dir", "out_dir")]) == 2
    assert "error: pretrained weights torchvision:ResNet18_Weights.IMAGENET1K_V1 not found" in capsys.readouterr().err
