"""The preset's dry run: every row with its file, data, weights, devices and time per epoch; nothing trained."""
import pytest

from dropit.lab import download as dl
from dropit.lab.models import weights as W
from dropit.lab.reproduce import dry_run as D
from dropit.lab.reproduce import run as R
from dropit.lab.train.config import RunConfig
from lab_fakes import fake_published_weights, write_cifar100

VIT = "torchvision:ViT_B_16_Weights.IMAGENET1K_V1"
DEIT_S = "timm:deit_small_patch16_224.fb_in1k"
DEIT_B = "timm:deit_base_patch16_224.fb_in1k"


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """$DROPIT_DATA with CIFAR-100 only (no ImageNet), $DROPIT_WEIGHTS with the ViT-B/16 file only."""
    data, cache = tmp_path / "data", tmp_path / "weights"
    write_cifar100(data, n_train=10, n_test=10)
    cache.mkdir()
    fake_published_weights(VIT, cache / "vit_b_16-c867db91.pth")
    monkeypatch.setenv("DROPIT_DATA", str(data))
    monkeypatch.setenv(W.ENV, str(cache))
    monkeypatch.setattr(W, "_download", lambda *a: pytest.fail("the dry run downloaded"))
    return data, cache


def _run(**kwargs):
    lines = []
    status = D.dry_run("paper", measure=False, out=lines.append, **kwargs)
    return status, "\n".join(lines)


def test_every_row_is_listed_with_what_it_needs_and_the_run_fails_if_one_cannot_start(roots):
    data, cache = roots
    status, text = _run()  # offline (conftest)
    assert status == 1 and text.count("\n[") == 16 and "[16/16] params/iclr_cifar100_deit_base_dropit.yaml" in text
    assert f"cifar100 at {data / 'cifar-100-python'}: present" in text
    assert f"imagenet at {data / 'imagenet'}: MISSING (never downloaded)" in text
    assert f"{VIT} at {cache / 'vit_b_16-c867db91.pth'}: present" in text
    assert f"{DEIT_S} at {cache / 'deit_small_patch16_224-cd65a155.pth'}: MISSING: dl.fbaipublicfiles.com cannot" in text
    assert "weights  none (trained from scratch)" in text and "devices  cpu" in text
    assert "amp=fp16 needs CUDA" in text  # the DeiT rows train in fp16: not on this CPU
    block = text.split("[3/16] ")[1].split("\n[")[0]  # CIFAR-100 ViT-B/16: data and weights present
    assert block.rstrip().endswith("-> can start") and "batch 512 per device" in block
    assert "missing, and how to supply it:" in text and "ILSVRC2012" in text
    assert f"download https://dl.fbaipublicfiles.com/deit/deit_base_patch16_224-b5f2ef4d.pth into {cache}" in text
    assert text.rstrip().endswith("iclr_cifar100_deit_base_dropit") and "4 of 16 rows can start here" in text


@pytest.mark.slow
def test_online_absent_weights_will_be_downloaded_and_with_downloads_off_they_are_missing(roots, monkeypatch):
    probes = []
    monkeypatch.setattr(dl, "reachable", lambda url, timeout=dl.PROBE_TIMEOUT_S: probes.append(url) or True)
    _, text = _run()
    assert f"{DEIT_B} at" in text and "absent: downloaded from dl.fbaipublicfiles.com before the rows run" in text
    assert len(probes) == 1  # one probe per host, and nothing fetched (W._download fails the test)
    monkeypatch.setattr(dl, "reachable", lambda *a, **k: pytest.fail("probed with downloads off"))
    _, text = _run(download=False)
    assert "deit_small_patch16_224-cd65a155.pth: MISSING (downloads are off)" in text


def test_the_time_per_epoch_is_measured_or_says_why_not():
    cfg = RunConfig(model="resnet_mini", dataset="cifar100", batch_size=4, subset=400, amp="none")
    import torch

    text = D.epoch_time(cfg, torch.device("cpu"), 4, max_step_s=60.0)
    assert text.startswith("~") and "/epoch (" in text and "x 100 steps, measured here" in text
    text = D.epoch_time(cfg, torch.device("cpu"), 4, max_step_s=1e-9)
    assert text.startswith("not measured (too slow here: ~") and "extrapolated from batch 2" in text


def test_the_command_line_dry_run_starts_no_notebook(roots, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(R, "ensure_kernel", lambda *a, **k: pytest.fail("a kernel was registered"))
    monkeypatch.setattr(R, "run_notebook", lambda *a, **k: pytest.fail("a notebook ran"))
    assert R.main(["--preset", "paper", "--dry-run", "--no-measure", "--results", str(tmp_path / "res")]) == 1
    assert "dry run: 4 of 16 rows can start here" in capsys.readouterr().out


def test_the_real_run_fetches_the_rows_weights_up_front(roots):
    jobs = R.plan("paper", roots[1])
    needed = R.weights_needed(jobs, "paper")
    assert [spec for spec, _ in needed] == [VIT, DEIT_S, DEIT_B]
    assert R.prepare_weights(needed, download=False) == [DEIT_S, DEIT_B]  # the ViT-B/16 file is in the cache


def test_weights_that_do_not_load_into_the_rows_model_stop_it(roots):
    (roots[1] / "vit_b_16-c867db91.pth").write_bytes(b"a truncated download")
    status, text = _run()
    block = text.split("[3/16] ")[1].split("\n[")[0]
    assert f"{VIT} at {roots[1] / 'vit_b_16-c867db91.pth'}: present" in block
    assert "-> CANNOT START: the weights at" in block and "do not load (" in block
    assert "2 of 16 rows can start here" in text
