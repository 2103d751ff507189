"""Run table rows from parameter files: in this process, or through torchrun.

The cifar100 / imagenet notebooks call :func:`run_rows`; each parameter file
is one row of the paper's tables (``params/<table>_<model>[_dropit][_quick].yaml``).
With ``launcher="auto"`` a machine with several CUDA devices runs each row as
``torchrun --standalone --nproc_per_node=<gpus> -m dropit.lab.train FILE k=v ...``
and reads back its ``metrics.json``; otherwise the row trains in this process.

    metrics = run_row("params/smoke.yaml", ["max_steps=5"], out_dir="runs/smoke")

With a time budget (the quick reproduction) each row gets a share of it and a
:class:`TimeLimit`; a DropIT row runs before its plain row, which then trains
for the same number of steps, so that each pair is compared at equal work.

Relative paths are looked up from the working directory first, then from the
project root (the folder above holding ``params/``), so notebooks work whether
they are started from ``notebooks/`` (JupyterLab, papermill) or the root.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding ``params/`` and ``dropit/``."""
    here = Path(start or os.getcwd()).resolve()
    for p in (here, *here.parents):
        if (p / "params").is_dir() and (p / "dropit").is_dir():
            return p
    return Path(__file__).resolve().parents[3]


def resolve(path: str | os.PathLike) -> Path:
    """``path`` if it exists as given, else the same relative path under :func:`project_root`."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return project_root() / p


def resolve_out(path: str | os.PathLike) -> Path:
    """Where an output path points: absolute as given, relative ones under :func:`project_root`."""
    p = Path(path)
    return p if p.is_absolute() else project_root() / p


def default_launcher() -> str:
    import torch

    return "torchrun" if torch.cuda.is_available() and torch.cuda.device_count() > 1 else "inprocess"


class TimeLimit:
    """Training callback: stop the loop cleanly once ``seconds`` have passed since it was made.

    The run then ends as any stopped run does (evaluated, metrics.json written,
    ``final.stopped`` true), and the tables say "stopped early".
    """

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.t0 = time.monotonic()
        self.hit = False

    def on_step(self, state) -> None:
        if time.monotonic() - self.t0 > self.seconds:
            state.stop = True
            self.hit = True


def run_row(
    params_file: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    out_dir: str | os.PathLike | None = None,
    launcher: str = "auto",
    callbacks: Sequence = (),
    time_limit_s: float | None = None,
    nproc: int | None = None,
) -> dict:
    """Train one row; returns its metrics dict (also in ``<out_dir>/metrics.json``).

    ``nproc``: processes for the torchrun launcher (default: one per CUDA device).

    ``time_limit_s`` (in-process runs only) stops training after that many
    seconds, counted from this call; the quick reproduction uses it to keep
    its promised wall time on slow or busy machines.
    """
    from dropit.lab.train.config import load_config

    path = resolve(params_file)
    overrides = list(overrides)
    if out_dir is not None:
        overrides.append(f"out_dir={Path(out_dir).resolve()}")
    config = load_config(str(path), overrides)  # validates before any work
    launcher = default_launcher() if launcher == "auto" else launcher
    t0 = time.perf_counter()
    print(f"== {path.name} {' '.join(overrides)} [{launcher}]", flush=True)
    if launcher == "inprocess":
        from dropit.lab.train import loop as train

        callbacks = list(callbacks)
        if time_limit_s is not None:
            callbacks.append(TimeLimit(time_limit_s))
        metrics = train.run(config, callbacks=callbacks or None)
    elif launcher == "torchrun":
        metrics = _torchrun(path, overrides, Path(config.out_dir), nproc)
    else:
        raise ValueError(f"launcher must be 'auto', 'inprocess' or 'torchrun', got {launcher!r}")
    final = metrics.get("final", {})
    print(
        f"== {path.name}: top-1 {final.get('top1', float('nan')):.2f}% in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return metrics


def _torchrun(path: Path, overrides: list[str], out_dir: Path, nproc: int | None = None) -> dict:
    import torch

    nproc = nproc or max(1, torch.cuda.device_count())
    exe = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    cmd = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    cmd += ["--standalone", f"--nproc_per_node={nproc}", "-m", "dropit.lab.train", str(path), *overrides]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads((out_dir / "metrics.json").read_text())


def as_list(value) -> list[str]:
    """A list of strings from a list, or from one string as papermill's ``-p`` passes it:
    ``'["a.yaml", "b.yaml"]'`` (YAML/JSON list) or ``"a.yaml"`` (one item)."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import yaml

            return [str(v) for v in yaml.safe_load(text)]
        return [text] if text else []
    return [str(v) for v in value]


def _pairs(configs: Sequence) -> dict[int, int]:
    """{plain row index: its DropIT row index} for neighbouring rows of one model and dataset."""
    out = {}
    for i in range(len(configs) - 1):
        a, b = configs[i], configs[i + 1]
        if (a.model, a.dataset) == (b.model, b.dataset) and a.dropit != b.dropit and i not in out.values():
            plain, drop = (i, i + 1) if b.dropit else (i + 1, i)
            out[plain] = drop
    return out


def run_rows(
    params_files: Sequence[str | os.PathLike],
    overrides: Sequence[str] = (),
    *,
    out_root: str | os.PathLike = "results/runs",
    launcher: str = "auto",
    time_budget_s: float | None = None,
    row_margin_s: float = 30.0,
    dropit_share: float = 0.6,
) -> list[dict]:
    """:func:`run_row` for each file, each into ``<out_root>/<file stem>``; metrics in file order.

    ``time_budget_s`` bounds all rows together. Each row may train for an equal
    share of what is left when it starts (time a fast row leaves over goes to
    the next), less ``row_margin_s`` for its final evaluation. A plain row and
    its DropIT row (neighbours, same model and dataset) are compared at equal
    work: the DropIT row runs first with ``dropit_share`` of the pair's time,
    and if the limit stopped it, the plain row trains for the same number of
    steps (DropIT's selection makes its steps slower on a CPU, so equal time
    would mean fewer DropIT steps).
    """
    from dropit.lab.train.config import load_config

    params_files, overrides = as_list(params_files), as_list(overrides)
    root = resolve_out(out_root)
    configs = [load_config(str(resolve(f)), list(overrides)) for f in params_files]  # all checked up front
    pairs = _pairs(configs)
    partner_of_drop = {d: p for p, d in pairs.items()}
    order: list[int] = []
    for i in range(len(params_files)):
        if i in order:
            continue
        if i in pairs:  # plain row: its DropIT row goes first
            order += [pairs[i], i]
        elif i in partner_of_drop:
            order += [i, partner_of_drop[i]]
        else:
            order.append(i)

    t0 = time.monotonic()
    results: dict[int, dict] = {}
    for k, i in enumerate(order):
        f, extra, limit = params_files[i], list(overrides), None
        if time_budget_s is not None:
            share = (time_budget_s - (time.monotonic() - t0)) / (len(order) - k)
            if i in partner_of_drop and partner_of_drop[i] not in results:
                share *= 2 * dropit_share
            limit = max(15.0, share - row_margin_s)
        drop = pairs.get(i)
        if drop is not None and drop in results and results[drop].get("final", {}).get("stopped"):
            steps = results[drop]["final"]["steps"]
            cap = configs[i].max_steps
            extra.append(f"max_steps={min(steps, cap) if cap else steps}")
            print(f"-- matching the DropIT row: {steps} steps", flush=True)
        print(f"-- row {k + 1}/{len(order)}" + (f" (time limit {limit:.0f} s)" if limit else ""), flush=True)
        results[i] = run_row(f, extra, out_dir=root / Path(f).stem, launcher=launcher, time_limit_s=limit)
    return [results[i] for i in range(len(params_files))]


def table_params(table: str, preset: str = "quick") -> list[str]:
    """The parameter files of one table's rows: ``params/<row id>[_quick].yaml``."""
    from dropit.lab.paper import table_rows

    if preset not in ("quick", "paper"):
        raise ValueError(f"preset must be 'quick' or 'paper', got {preset!r}")
    suffix = "_quick" if preset == "quick" else ""
    files = [f"params/{r['id']}{suffix}.yaml" for r in table_rows(table)]
    if not files:
        raise ValueError(f"no rows for table {table!r}")
    return files
