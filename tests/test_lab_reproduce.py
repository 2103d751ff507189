"""The reproduction's plan: time shares by rows, and the data fetched before any notebook runs."""
import dataclasses

import pytest

from dropit.lab import download as dl
from dropit.lab.reproduce import run as reproduce
from lab_fakes import write_cifar100, write_image_folder


def test_budget_is_shared_by_rows_and_rows_never_download(tmp_path):
    jobs = reproduce.plan("quick", tmp_path)
    tables = [j for j in jobs if j.name in reproduce.TABLE_JOBS]
    assert [j.name for j in tables] == ["cifar100", "imagenet", "iclr"]
    share = reproduce.table_budget(tables[0], tables, budget_s=1000 + reproduce.RESERVE_S + 30, elapsed_s=0)
    assert share == pytest.approx(1000 * 4 / 16)  # 4 of the 16 rows left
    assert reproduce.table_budget(tables[2], tables[2:], 1000 + reproduce.RESERVE_S + 10, 0) == pytest.approx(1000)
    for job in jobs:
        if "overrides" in job.parameters:
            assert reproduce.NO_DOWNLOAD in job.parameters["overrides"]


def test_data_needed_by_the_quick_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("DROPIT_DATA", str(tmp_path))
    needed = reproduce.data_needed(reproduce.plan("quick", tmp_path), "quick")
    assert needed == [("cifar100", tmp_path.resolve()), ("imagenette", tmp_path.resolve())]
    paper = reproduce.data_needed(reproduce.plan("paper", tmp_path), "paper")
    assert {d for d, _ in paper} == {"cifar100", "imagenet"}


def _fake_sources(monkeypatch, calls):
    def cifar(tmp):
        calls.append("cifar100")
        return write_cifar100(tmp, n_train=10, n_test=10)

    def imagenette(tmp):
        calls.append("imagenette")
        return write_image_folder(tmp, "imagenette2-160", classes=2, per_class=1, size=16)

    monkeypatch.setattr(dl, "CIFAR100", dataclasses.replace(dl.CIFAR100, download=cifar))
    monkeypatch.setattr(dl, "IMAGENETTE", dataclasses.replace(dl.IMAGENETTE, download=imagenette))


def test_prepare_data_downloads_what_is_missing(tmp_path, monkeypatch, capsys):
    calls = []
    _fake_sources(monkeypatch, calls)
    monkeypatch.setattr(dl, "reachable", lambda url, timeout=None: True)
    needed = [("cifar100", tmp_path), ("imagenette", tmp_path)]
    assert reproduce.prepare_data(needed) == [] and calls == ["cifar100", "imagenette"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-100-python", "imagenette"]
    assert reproduce.prepare_data(needed) == [] and len(calls) == 2  # present now
    assert f"data: imagenette in {tmp_path / 'imagenette'}" in capsys.readouterr().out


def test_prepare_data_offline_or_switched_off_reports_and_goes_on(tmp_path, monkeypatch, capsys):
    calls = []
    _fake_sources(monkeypatch, calls)  # the conftest's probe finds no network
    needed = [("cifar100", tmp_path), ("imagenet", tmp_path)]
    assert reproduce.prepare_data(needed) == ["cifar100", "imagenet"] and calls == []
    out = capsys.readouterr().out
    assert "data: cifar100 missing: cannot download CIFAR-100: no connection" in out
    assert str(tmp_path / "imagenet" / "train") in out and "ImageNet cannot be downloaded" in out
    monkeypatch.setattr(dl, "reachable", lambda *a, **k: pytest.fail("probed with --no-download"))
    assert reproduce.prepare_data(needed, download=False) == ["cifar100", "imagenet"]
