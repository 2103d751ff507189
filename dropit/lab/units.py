"""The lab's memory unit: figures in bytes are shown in MiB (2**20 bytes), the core's one definition
(:data:`dropit.meter.MiB`)."""
from __future__ import annotations

from dropit.meter import MiB


def mib(nbytes: float | None) -> float | None:
    """``nbytes`` in MiB (None stays None)."""
    return None if nbytes is None else nbytes / MiB
