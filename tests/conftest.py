"""Shared test settings: deterministic, few threads (CI has two cores), never online."""
import os
import sys

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _fresh_compiler():
    """Each test compiles from scratch: dynamo keeps up to 8 graphs per code object across tests
    (every compiled module shares the same wrapper frame), and fullgraph=True fails past that."""
    yield
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test downloads: the connection probe finds no network (tests of downloads fake one)."""
    from dropit.lab import download

    monkeypatch.setattr(download, "reachable", lambda url, timeout=download.PROBE_TIMEOUT_S: False)


def pytest_collection_modifyitems(config, items):
    """Tests that run a notebook (they take the ``kernel`` fixture) are marked ``notebook``; CUDA tests skip
    without a CUDA device."""
    skip = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA device; none is present on this machine")
    for item in items:
        if "kernel" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.notebook)
        if skip is not None and "cuda" in item.keywords:
            item.add_marker(skip)
