"""Reproduce the paper's tables by running the notebooks with papermill.

    DROPIT_DATA=../shared/data python -m dropit.lab.reproduce               # quick preset, CPU, < 20 min
    python -m dropit.lab.reproduce --preset paper                           # full recipes (GPUs; torchrun if several)
    python -m dropit.lab.reproduce --only memory,cifar100 --results out/    # a part
    python -m dropit.lab.reproduce --preset paper --dry-run                 # what each row needs; trains nothing

Runs, each with papermill on the ``dropit`` Jupyter kernel (registered for
this Python on first use, ``python -m ipykernel install --sys-prefix --name dropit``):

1. ``memory.ipynb``      the Cache (MB) column of all eight rows, per-layer breakdown
2. ``quickstart.ipynb``  the teaching figures (no widgets)
3. ``explore.ipynb``     a short γ sweep through the lab bench: plain, then DropIT at γ 0.5 and 0.9 (quick preset only)
   ``claim.ipynb``       the accuracy claim study: both presets show the committed full study (docs/claim.md);
                         quick also runs plain and mink for 200 steps into results/claim_check (a pipeline check)
4. ``cifar100.ipynb``    the four CIFAR-100 rows (``params/cifar100_*[_quick].yaml``)
5. ``imagenet.ipynb``    the four ImageNet rows (Imagenette in the quick preset)
6. ``iclr.ipynb``        the ICLR release's eight DeiT rows (``params/iclr_*[_quick].yaml``)

and writes ``<results>/tables.md``, ``<results>/report.html`` (self-contained)
and the executed notebooks ``<results>/<name>.ipynb``. Progress: one line per
notebook and the notebooks' own log lines as they run. A failing notebook is
reported and the rest still run; the exit status is 1 if any failed.

Data: before the notebooks run, the datasets the rows need are looked for in
``$DROPIT_DATA`` (else ``<project>/data``) and CIFAR-100 and Imagenette are
downloaded there if missing (a progress bar; see :mod:`dropit.lab.download`).
``--no-download`` turns that off; offline, the missing dataset's message is
printed at once and the rows that need it fail fast with it. Pretrained weights
named by the rows' parameter files are fetched the same way, into the weights
cache (see :mod:`dropit.lab.models.weights`).

``--dry-run`` lists every row with its parameter file, the data and weights it
needs (present or not), its devices and a rough time per epoch measured here,
and exits 1 if any row cannot start (:mod:`dropit.lab.reproduce.dry_run`).

Time: the quick preset keeps to ``--budget-min`` (default 18) whatever the
machine's speed: the table notebooks get what the budget has left, shared
equally by their rows, and a row that reaches its share stops training cleanly
(evaluated, metrics written) and is marked "stopped early" in the tables.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dropit.lab.reproduce.rows import project_root

KERNEL_NAME = "dropit"
ALL = ("memory", "quickstart", "explore", "claim", "cifar100", "imagenet", "iclr")
TABLE_JOBS = ("cifar100", "imagenet", "iclr")
NO_DOWNLOAD = "download=false"  # rows never download: the data was fetched (or found missing) up front


@dataclass
class Job:
    name: str  # notebook stem under notebooks/
    parameters: dict = field(default_factory=dict)


EXPLORE_PARAMS = "params/explore.yaml"  # the explore notebook's default recipe


def plan(preset: str, results: Path) -> list[Job]:
    """The notebooks to run and their parameters for a preset (fixed-cost ones first)."""
    runs, figures = str(results / "runs" / preset), str(results / "figures")
    table = dict(preset=preset, out_root=runs, figures_dir=figures, overrides=[NO_DOWNLOAD])
    jobs = [
        Job("memory", dict(batch_size=128, out_dir=str(results / "memory"), interactive=False)),
        Job("quickstart", dict(interactive=False)),
    ]
    if preset == "quick":
        jobs.append(
            Job("explore", dict(interactive=False, out_root=str(results / "explore"), sweep_gammas=[0.5, 0.9],
                                overrides=["subset=500", "val_subset=200", "batch_size=32", "max_steps=8", "cache_batch=16",
                                           "checkpoint=false", NO_DOWNLOAD]))
        )
    jobs.append(Job("claim", claim_parameters(preset, results)))
    jobs += [Job(t, dict(table=t, **table)) for t in TABLE_JOBS]
    return jobs


def claim_parameters(preset: str, results: Path) -> dict:
    """The claim notebook's parameters: both presets show the committed full study (``docs/claim``, written by
    ``make claim``); quick also runs a two-arm, one-seed, 200-step pipeline check into ``results/claim_check``."""
    quick = preset == "quick"
    return dict(study_dir=str(project_root() / "docs" / "claim"), protocols=["cnn", "vit"], run_check=quick,
                check_dir=str(results / "claim_check"), check_protocol="cnn", check_arms=["plain", "mink"],
                check_seeds=1, check_max_steps=200, check_val_subset=2000, check_overrides=[NO_DOWNLOAD])


RESERVE_S = 60.0  # kept back for the report, kernel start-ups and slack


def _rows_of(job: Job) -> int:
    from dropit.lab.paper import table_rows

    return len(table_rows(job.name))


def table_budget(job: Job, jobs_left: list[Job], budget_s: float, elapsed_s: float) -> float | None:
    """Seconds a table notebook may spend on its rows: its share (by rows) of what the budget has left."""
    tables_left = [j for j in jobs_left if j.name in TABLE_JOBS]
    if job.name not in TABLE_JOBS or not tables_left:
        return None
    rows_left = sum(_rows_of(j) for j in tables_left)
    left = budget_s - elapsed_s - RESERVE_S - 10.0 * len(jobs_left)
    return max(60.0, left * _rows_of(job) / rows_left)


def data_needed(jobs: list[Job], preset: str) -> list[tuple[str, Path]]:
    """(dataset, data root) of every row the jobs will train, each once, in order."""
    from dropit.lab.train.config import load_config
    from dropit.lab.data.datasets import resolve_data_dir
    from dropit.lab.reproduce.rows import resolve, table_params

    files = [f for j in jobs if j.name in TABLE_JOBS for f in table_params(j.name, preset)]
    files += [EXPLORE_PARAMS] if any(j.name == "explore" for j in jobs) else []
    needed: list[tuple[str, Path]] = []
    for f in files:
        cfg = load_config(str(resolve(f)))
        item = (cfg.dataset, resolve_data_dir(cfg.data_dir).resolve())
        if item not in needed:
            needed.append(item)
    return needed


def _find_each(what: str, needed: list[tuple[str, object]], find) -> list[str]:
    """``find(name, where)`` for each needed item; prints one line each; returns the names that are missing."""
    from dropit.lab.download import Missing

    missing = []
    for name, where in needed:
        try:
            print(f"{what}: {name} in {find(name, where)}", flush=True)
        except Missing as e:
            print(f"{what}: {name} missing: {e}", flush=True)
            missing.append(name)
    return missing


def prepare_data(needed: list[tuple[str, Path]], download: bool = True) -> list[str]:
    """Find (and, where allowed, download) each dataset; prints one line each; returns the missing ones."""
    from dropit.lab.data.datasets import ensure_dataset

    return _find_each("data", needed, lambda dataset, root: ensure_dataset(dataset, root, download))


def weights_needed(jobs: list[Job], preset: str) -> list[tuple[str, str | None]]:
    """(pretrained, weights_dir) of every table row the jobs will train that names weights, each once."""
    from dropit.lab.train.config import load_config
    from dropit.lab.reproduce.rows import resolve, table_params

    files = [f for j in jobs if j.name in TABLE_JOBS for f in table_params(j.name, preset)]
    needed = [(cfg.pretrained, cfg.weights_dir) for cfg in (load_config(str(resolve(f))) for f in files)]
    return list(dict.fromkeys(item for item in needed if item[0]))


def prepare_weights(needed: list[tuple[str, str | None]], download: bool = True) -> list[str]:
    """Find (and, where allowed, download) each named weights file; one line each; returns the missing ones."""
    from dropit.lab.models.weights import resolve_weights

    return _find_each("weights", needed, lambda spec, cache: resolve_weights(spec, cache_dir=cache, download=download))


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Register a Jupyter kernel for this Python (in sys.prefix) unless one by that name runs it already."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
        if spec.argv and Path(spec.argv[0]).resolve() == Path(sys.executable).resolve():
            return name
    except NoSuchKernel:
        pass
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", name, "--display-name", "Python (dropit)"],
        check=True,
    )
    return name


def _absolute_data_env(root: Path) -> None:
    """Notebooks run in notebooks/, so DROPIT_DATA is made absolute here: as given, else ``<root>/data``
    (where the downloads go)."""
    data = os.environ.get("DROPIT_DATA")
    os.environ["DROPIT_DATA"] = str(Path(data).resolve() if data else (root / "data").resolve())


def _stream_papermill_log() -> None:
    """papermill's ``log_output`` goes to its logger: print it, bare, as the cells run."""
    import logging

    logger = logging.getLogger("papermill")
    if not any(getattr(h, "_dropit", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("    %(message)s"))
        handler._dropit = True
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def run_notebook(job: Job, results: Path, *, kernel: str, root: Path, log_output: bool = True) -> Path:
    import papermill as pm

    if log_output:
        _stream_papermill_log()

    src = root / "notebooks" / f"{job.name}.ipynb"
    dst = results / f"{job.name}.ipynb"
    pm.execute_notebook(
        str(src),
        str(dst),
        parameters=job.parameters,
        kernel_name=kernel,
        cwd=str(root / "notebooks"),
        log_output=log_output,
        progress_bar=False,
        request_save_on_cell_execute=True,
        store_widget_state=False,  # widgets without a front end: their state (plotly.js) would bloat the file
    )
    return dst


def _arguments() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m dropit.lab.reproduce", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=("quick", "paper"), default="quick",
                    help="quick: CPU-sized rows in minutes (default); paper: the paper's recipes")
    ap.add_argument("--results", default="results", help="output folder (default: results/)")
    ap.add_argument("--only", default=",".join(ALL), help=f"comma-separated notebooks to run, of {','.join(ALL)}")
    ap.add_argument("--kernel", default=KERNEL_NAME, help="Jupyter kernel name to register and use")
    ap.add_argument("--quiet", action="store_true", help="do not stream the notebooks' output")
    ap.add_argument("--no-download", action="store_true",
                    help="never download: use only the datasets already in $DROPIT_DATA and the weights already in "
                         "the cache (default: fetch CIFAR-100, Imagenette and named pretrained weights where missing)")
    ap.add_argument("--dry-run", action="store_true",
                    help="list every row's parameter file, data, weights, devices and time per epoch; train nothing; "
                         "exit 1 if any row cannot start")
    ap.add_argument("--no-measure", action="store_true", help="with --dry-run: do not time training steps")
    ap.add_argument("--budget-min", type=float, default=None,
                    help="wall-time budget in minutes (default: 18 for quick, none for paper; 0: none)")
    return ap


def _run_jobs(jobs: list[Job], results: Path, *, kernel: str, root: Path, budget_min: float,
              quiet: bool) -> tuple[list[str], list[str], float]:
    """Each notebook in turn, each within its share of the budget; a failure is recorded, not raised."""
    t_all = time.perf_counter()
    failed, timings = [], []
    for i, job in enumerate(jobs, 1):
        elapsed = time.perf_counter() - t_all
        if budget_min:
            share = table_budget(job, jobs[i - 1:], budget_min * 60, elapsed)
            if share is not None:
                job.parameters["time_budget_s"] = round(share)
        extra = f", rows within {job.parameters['time_budget_s']} s" if "time_budget_s" in job.parameters else ""
        print(f"\n[{i}/{len(jobs)}] {job.name}.ipynb ... ({elapsed:.0f} s elapsed{extra})", flush=True)
        t0 = time.perf_counter()
        try:
            run_notebook(job, results, kernel=kernel, root=root, log_output=not quiet)
            status = "ok"
        except Exception as e:  # keep going: the report shows what is missing
            lines = str(e).strip().splitlines()
            status = f"FAILED: {type(e).__name__}: {lines[-1] if lines else ''}"
            failed.append(job.name)
        dt = time.perf_counter() - t0
        timings.append(f"{job.name} {dt:.0f} s ({status.split(':')[0]})")
        print(f"[{i}/{len(jobs)}] {job.name}.ipynb {status} in {dt:.0f} s", flush=True)
    return failed, timings, time.perf_counter() - t_all


def main(argv: list[str] | None = None) -> int:
    ap = _arguments()
    args = ap.parse_args(argv)
    root = project_root()
    results = Path(args.results)
    results = (results if results.is_absolute() else root / results).resolve()
    results.mkdir(parents=True, exist_ok=True)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(only) - set(ALL))
    if unknown:
        ap.error(f"unknown notebook(s) {unknown}; choose from {list(ALL)}")
    _absolute_data_env(root)
    if args.dry_run:
        from dropit.lab.reproduce.dry_run import dry_run

        return dry_run(args.preset, download=not args.no_download, measure=not args.no_measure)
    kernel = ensure_kernel(args.kernel)
    jobs = [j for j in plan(args.preset, results) if j.name in only]
    print(f"reproduce: preset {args.preset}, {len(jobs)} notebooks -> {results} (kernel {kernel!r}, "
          f"DROPIT_DATA={os.environ.get('DROPIT_DATA', '(unset)')})", flush=True)
    prepare_data(data_needed(jobs, args.preset), download=not args.no_download)
    prepare_weights(weights_needed(jobs, args.preset), download=not args.no_download)
    budget_min = args.budget_min if args.budget_min is not None else (18.0 if args.preset == "quick" else 0.0)
    failed, timings, wall = _run_jobs(jobs, results, kernel=kernel, root=root, budget_min=budget_min, quiet=args.quiet)

    from dropit.lab.reproduce import report

    notes = f"Preset `{args.preset}`; wall time {wall / 60:.1f} min: " + "; ".join(timings) + "."
    tables_path, html_path = report.build(results, preset=args.preset, notes=notes)
    print(f"\nwrote {tables_path}\nwrote {html_path}\nexecuted notebooks in {results}")
    print(f"reproduce: {'failed: ' + ', '.join(failed) if failed else 'all notebooks ran'} in {wall / 60:.1f} min")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
