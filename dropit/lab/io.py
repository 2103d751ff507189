"""The one way the lab writes a file: atomically, durably, and JSON only when it is JSON.

    from dropit.lab.io import write_json, write_text, write_bytes
    write_json("runs/smoke/metrics.json", metrics)

Every write goes to a temporary file in the destination folder, is flushed and
fsync'ed, then moved over the destination with ``os.replace`` (and the folder
fsync'ed, so the rename itself survives a crash): a reader, or a run resumed
after a crash, sees the old file or the new one, never half of one.

:func:`write_json` serialises before it opens anything, and refuses what JSON
cannot hold: a ``TypeError`` names the key path of the offending value and how
to convert it, instead of writing ``"tensor(3.)"`` or ``"<object at 0x...>"``
where a number was meant. NumPy scalars become Python numbers and paths become
strings; everything else must already be a dict, list, tuple, str, int, float,
bool or None.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

_PLAIN = (str, int, float, bool, type(None))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, os.replace); the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; the path. Raises TypeError (nothing written) on a value JSON cannot hold."""
    return write_text(path, json.dumps(plain_json(obj), indent=indent) + "\n")


def plain_json(obj: Any, where: str = "obj") -> Any:
    """``obj`` with NumPy scalars as Python numbers and paths as strings; TypeError naming ``where`` for anything else."""
    if isinstance(obj, _PLAIN):
        return obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, _PLAIN) or k is None:
                raise TypeError(f"{where} has a key of type {type(k).__name__} ({k!r}); JSON keys are strings: use str(key)")
            out[k] = plain_json(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [plain_json(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if type(obj).__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        return obj.item()  # a NumPy scalar (np.float64, np.int64, ...)
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__name__}, which JSON cannot hold; "
        f"convert it before writing ({_hint(obj)})"
    )


def _hint(obj: Any) -> str:
    if hasattr(obj, "tolist"):
        return "a tensor or array: .item() for one number, .tolist() for several"
    return "to a number, string, list or dict, e.g. str(value) if a label is what you mean"


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename is still atomic
    finally:
        os.close(fd)


def write_figure(path: str | os.PathLike, fig) -> Path:
    """A plotly figure as plotly's own JSON (reloadable with ``plotly.io.read_json``), atomically; the path.

    Name it ``<name>.plotly.json`` so it never clobbers a data file of the same stem.
    """
    return write_text(path, fig.to_json())
