"""The lab's one definition of its memory unit: figures in bytes are shown in MiB (2**20 bytes)."""
from __future__ import annotations

MiB = 2**20


def mib(nbytes: float | None) -> float | None:
    """``nbytes`` in MiB (None stays None)."""
    return None if nbytes is None else nbytes / MiB
