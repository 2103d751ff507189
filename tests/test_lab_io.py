"""dropit.lab.io: the one atomic writer; JSON only when it is JSON, nothing half-written."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dropit.lab import io


def test_write_json_roundtrip_numpy_scalars_and_paths(tmp_path):
    obj = {"a": [1, 2.5, None, True], "n": np.int64(3), "x": np.float32(0.5), "p": Path("runs/x"), "t": (1, "s")}
    path = io.write_json(tmp_path / "sub" / "m.json", obj)
    assert path == tmp_path / "sub" / "m.json"
    assert json.loads(path.read_text()) == {"a": [1, 2.5, None, True], "n": 3, "x": 0.5, "p": "runs/x", "t": [1, "s"]}
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]  # no temp file left


@pytest.mark.parametrize("bad, where, hint", [
    ({"final": {"top1": torch.tensor(3.0)}}, "obj['final']['top1']", ".item()"),
    ({"rows": [1, object()]}, "obj['rows'][1]", "str(value)"),
    ({"rows": [{torch.float32: 1}]}, "obj['rows'][0]", "str(key)"),
])
def test_write_json_refuses_what_it_cannot_hold_and_writes_nothing(tmp_path, bad, where, hint):
    target = tmp_path / "m.json"
    io.write_json(target, {"v": 1})
    with pytest.raises(TypeError) as err:
        io.write_json(target, bad)
    assert where in str(err.value) and hint in str(err.value)
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    io.write_json(target, {"v": 1})

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        io.write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_write_fsyncs_the_file_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    io.write_text(tmp_path / "t.txt", "héllo")
    assert events[:2] == ["fsync", "replace"]
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"


def test_no_other_json_writer_in_the_lab_or_benchmarks():
    root = Path(__file__).resolve().parents[1]
    files = list((root / "dropit" / "lab").rglob("*.py")) + list((root / "benchmarks").glob("*.py"))
    offenders = []
    for f in files:
        if f.name == "io.py" and f.parent.name == "lab":
            continue
        text = f.read_text()
        for needle in ("json.dump(", "os.replace(", ".write_text(", "tempfile.mkstemp("):
            if needle in text:
                offenders.append(f"{f.relative_to(root)}: {needle}")
    assert not offenders, "write files through dropit.lab.io: " + ", ".join(offenders)
