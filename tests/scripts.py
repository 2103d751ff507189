"""The kit's command-line scripts (benchmarks/, docs/, notebooks/) loaded as modules for the tests to call."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str):
    """The module of the script at ``ROOT / relative`` (e.g. ``"docs/make_pages.py"``), freshly executed."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
