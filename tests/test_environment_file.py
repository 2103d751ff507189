"""environment.yml installs what pyproject.toml's lab and notebooks extras name (the paper rows need timm)."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # the conda package of a PyPI name, where they differ


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_installs_the_lab_and_notebook_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {_name(r) for group in ("lab", "notebooks") for r in extras[group] if not r.startswith("dropit")}
    wanted |= {_name(r) for r in project["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    pip = [p for d in env["dependencies"] if isinstance(d, dict) for p in d.get("pip", [])]
    assert "timm" in conda
    assert any(p.startswith("-e") and "lab" in p and "notebooks" in p for p in pip), pip
    missing = {n for n in wanted if CONDA_NAMES.get(n, n) not in conda}
    assert not missing, f"environment.yml leaves these to pip's resolver: {sorted(missing)}; list them for conda"
