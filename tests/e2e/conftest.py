"""Fixtures for the browser tests: a JupyterLab server and a headless Chromium.

- ``chromium``       path of Debian's Chromium (``$DROPIT_CHROMIUM``, ``chromium`` on
                     PATH, or /usr/bin/chromium); the test is skipped without it or
                     without Playwright's Python package.
- ``start_lab``      a factory: copies ``notebooks/`` to a temp folder, injects
                     papermill-style parameters, and starts ``jupyter lab`` (this
                     environment's, with private settings) on a free loopback port with
                     a random token. Every server is stopped when the test ends, however
                     it ends: its kernels are shut down, then the server's process group
                     and any process it left behind are terminated and, if need be, killed.
                     The kernel the notebooks name ("dropit") is NOT registered here: it is
                     the one ``make test`` / ``make test-e2e`` register in this environment
                     (``python -m ipykernel install --sys-prefix --name dropit``), so the
                     tests see what a user sees, and fail if JupyterLab has to fall back.
                     ``kernelspec={...}`` rewrites the copies' kernelspec (the negative control).
- ``browser``        a Chromium context driven by Playwright (``executable_path``, never
                     Playwright's own browser download), with a fresh profile folder.
- ``screenshots``    the folder screenshots go to: ``$DROPIT_E2E_SCREENSHOTS`` or
                     ``tests/e2e/screenshots/`` (ignored by git).
"""
from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# JupyterLab user settings for a quiet, fully rendered page: no news or update toasts,
# and every cell in the DOM (no windowing), so outputs can be found and screenshotted.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def pytest_collection_modifyitems(config, items):
    """Skip the e2e tests with one clear reason when the browser stack is missing."""
    reason = _missing_browser_stack()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(skip)


def _chromium_path() -> str | None:
    """``$DROPIT_CHROMIUM`` when set (a wrong path then means: none), else Debian's chromium."""
    if "DROPIT_CHROMIUM" in os.environ:
        p = os.environ["DROPIT_CHROMIUM"]
        return p if os.access(p, os.X_OK) else None
    for p in (shutil.which("chromium"), "/usr/bin/chromium"):
        if p and os.access(p, os.X_OK):
            return p
    return None


def _missing_browser_stack() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed (.ci/install-browser.sh installs it)"
    if _chromium_path() is None:
        return "Chromium not found (apt-get install chromium, or set DROPIT_CHROMIUM; .ci/install-browser.sh)"
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    return _chromium_path()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    out = Path(os.environ.get("DROPIT_E2E_SCREENSHOTS", ROOT / "tests" / "e2e" / "screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


# ------------------------------------------------------------------ JupyterLab


@dataclasses.dataclass
class Lab:
    """A running JupyterLab server: where it listens and what it serves."""

    proc: subprocess.Popen
    url: str            # http://127.0.0.1:<port>
    token: str
    root: Path          # the served copy of notebooks/
    log: Path

    def page_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}"

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare_root(root: Path, parameters: dict[str, dict], kernelspec: dict | None = None) -> None:
    """Copy notebooks/ to ``root`` and inject each notebook's parameters as papermill does."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    shutil.copytree(NB_DIR, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for name, params in parameters.items():
        path = root / f"{name}.ipynb"
        nb = parameterize_notebook(load_notebook_node(str(path)), params)
        if kernelspec is not None:
            nb.metadata["kernelspec"] = kernelspec
        nbformat.write(nb, path)


def _jupyter_dirs(base: Path) -> dict[str, str]:
    """A private Jupyter environment with quiet settings; kernels come from this environment (sys.prefix)."""
    data, settings = base / "data", base / "settings"
    data.mkdir(parents=True)
    for rel, value in LAB_SETTINGS.items():
        f = settings / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    for d in ("config", "runtime", "workspaces"):
        (base / d).mkdir()
    return {"JUPYTER_PATH": str(data), "JUPYTER_CONFIG_DIR": str(base / "config"),
            "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "settings": str(settings),
            "workspaces": str(base / "workspaces")}


def _wait_ready(lab: Lab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {lab.proc.returncode}:\n{lab.log_tail()}")
        try:
            lab.api("status")
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer within {timeout:.0f} s:\n{lab.log_tail()}")


def _stop(lab: Lab) -> None:
    """Shut the kernels down, then end the server's process group and anything it left."""
    import psutil

    try:
        family = psutil.Process(lab.proc.pid).children(recursive=True)
    except psutil.Error:
        family = []
    if lab.proc.poll() is None:
        try:
            for k in lab.api("kernels"):
                lab.api(f"kernels/{k['id']}", method="DELETE")
        except OSError:
            pass
        try:
            os.killpg(lab.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            lab.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(lab.proc.pid, signal.SIGKILL)
            lab.proc.wait(timeout=10)
    # kernels run in sessions of their own: kill any the server did not take down
    for p in family:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(family, timeout=10)


@pytest.fixture
def start_lab(tmp_path):
    """Factory ``start_lab(parameters={nb: {...}}, env={...}) -> Lab``; all servers stopped at teardown."""
    started: list[Lab] = []

    def start(parameters: dict[str, dict] | None = None, env: dict[str, str] | None = None,
              timeout: float = 120, kernelspec: dict | None = None) -> Lab:
        base = tmp_path / f"lab{len(started)}"
        root = base / "notebooks"
        _prepare_root(root, parameters or {}, kernelspec)
        dirs = _jupyter_dirs(base)
        token, port = secrets.token_hex(16), _free_port()
        jupyter = Path(sys.executable).parent / "jupyter"
        cmd = [
            str(jupyter), "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
            "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly",
            f"--LabApp.user_settings_dir={dirs.pop('settings')}",
            f"--LabApp.workspaces_dir={dirs.pop('workspaces')}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if os.geteuid() == 0:  # CI and these machines run as root
            cmd.append("--allow-root")
        full_env = {**os.environ, **dirs, "PYTHONUNBUFFERED": "1", **(env or {})}
        log = base / "jupyter.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=root, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        lab = Lab(proc=proc, url=f"http://127.0.0.1:{port}", token=token, root=root, log=log)
        started.append(lab)
        _wait_ready(lab, timeout)
        return lab

    try:
        yield start
    finally:
        for lab in started:
            _stop(lab)


# ------------------------------------------------------------------ Chromium


@pytest.fixture
def browser(chromium, tmp_path):
    """A Playwright browser context on Debian's Chromium with a fresh profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
