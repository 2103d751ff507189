"""Run the claim study: every (protocol, arm, seed) through the kit's loop, one small JSON per finished run.

    study = run_study("results/claim", protocol="cnn", arms=None, seeds=3)   # then claim.json

Layout of ``DIR``::

    DIR/runs/<protocol>-<arm>-seed<k>.json   one per finished run (small: config, per-epoch rows, final)
    DIR/work/<protocol>-<arm>-seed<k>/       the loop's out_dir: checkpoint.pt, metrics.json (never committed)
    DIR/claim.json                           the summary (:mod:`dropit.lab.claim.summary`)

Running again skips every run whose JSON exists and continues an interrupted
one from its last whole epoch (the loop's ``resume=true``); a run that ended
early (a callback's stop flag) writes no JSON and is continued the same way.
Seeds run outermost, so a study stopped part-way has whole pairs to compare.
With ``commit=True`` each finished run's JSON is committed to git at once
(only that file), so the study continues from a fresh clone.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

from dropit.lab.claim.protocols import ARMS, FINETUNE, check, run_config
from dropit.lab.claim.source import check_source, ensure_source
from dropit.lab.claim.summary import write_summary
from dropit.lab.io import write_json, write_text
from dropit.lab.train.config import RUN_CONTROL, RunConfig
from dropit.lab.train.loop import run

_ROW_KEYS = ("epoch", "steps", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
             "images_per_s", "train_s", "wall_s")
_FINAL_KEYS = ("top1", "top5", "val_loss", "train_loss", "train_top1", "steps", "epochs_completed", "wall_s",
               "images_per_s", "step_kept_bytes", "cache_bytes", "stopped")


def run_id(protocol: str, arm: str, seed: int) -> str:
    return f"{protocol}-{arm}-seed{seed}"


def plan(protocol: str, arms: Sequence[str] | None, seeds: int | Sequence[int]) -> list[tuple[str, str, int]]:
    """(protocol, arm, seed) in running order: seed by seed, every arm of a seed together."""
    arms = list(arms or ARMS[protocol])
    check(protocol, arms)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    return [(protocol, arm, s) for s in seed_list for arm in arms]


def stale_keys(saved: dict, now: dict, ignore: Iterable[str] = ()) -> list[str]:
    """``"key: saved -> now"`` for every recipe parameter in which a finished run differs from what would run now
    (a parameter added since the run was saved counts at its default, the value the run had)."""
    defaults = RunConfig().to_dict()
    skip = RUN_CONTROL | set(ignore)
    return [f"{k}: {saved.get(k, defaults.get(k))!r} -> {now[k]!r}" for k in sorted(now)
            if k not in skip and saved.get(k, defaults.get(k)) != now[k]]


def run_record(protocol: str, arm: str, seed: int, metrics: dict) -> dict:
    """The small JSON of a finished run from the loop's metrics dict: what the summary and figures read."""
    final = metrics["final"]
    return {
        "id": run_id(protocol, arm, seed), "protocol": protocol, "arm": arm, "seed": seed,
        "config": metrics["config"],
        "epochs": [{k: row.get(k) for k in _ROW_KEYS} for row in metrics["epochs"]],
        "final": {**{k: final.get(k) for k in _FINAL_KEYS}, "test_loss": final.get("val_loss")},
        "environment": metrics.get("environment", {}),
    }


def run_one(out: Path, protocol: str, arm: str, seed: int, *, overrides: Iterable[str] = (),
            callbacks=None, commit: bool = False) -> Path | None:
    """Train (or resume) one run; its JSON path once finished, None if it ended early (stopped)."""
    rid = run_id(protocol, arm, seed)
    path = out / "runs" / f"{rid}.json"
    overrides, source = list(overrides), None
    if protocol in FINETUNE:  # the source first (made when missing), checked before anything trains
        source_file = ensure_source(out, protocol, overrides=overrides, callbacks=callbacks)
        if source_file is None:
            return None
        overrides.append(f"pretrained={source_file}")
        source = {"file": source_file.name, "sha256": check_source(source_file, run_config(
            protocol, arm, seed=seed, out_dir=out / "work" / rid, overrides=overrides))}
    cfg = run_config(protocol, arm, seed=seed, out_dir=out / "work" / rid, overrides=overrides)
    if path.is_file():
        saved = json.loads(path.read_text())
        stale = stale_keys(saved["config"], cfg.to_dict(), ignore={"pretrained"} if source else ())
        if source and saved.get("source", {}).get("sha256") != source["sha256"]:
            stale.append(f"source sha256: {saved.get('source', {}).get('sha256')} -> {source['sha256']}")
        if stale:
            raise ValueError(f"{path} was trained with other parameters ({', '.join(stale)}); "
                             f"give another --out, or delete it to retrain")
        return path
    metrics = run(cfg, callbacks=callbacks)
    if metrics["status"] != "done":
        return None
    write_json(path, {**run_record(protocol, arm, seed, metrics), **({"source": source} if source else {})})
    if commit:
        commit_files([path], f"claim: {rid} finished (top-1 {metrics['final']['top1']:.2f})")
    return path


def commit_files(paths: Sequence[Path], message: str) -> bool:
    """``git add -f`` these files and commit only them, if any changed (checkpoints never go in); whether it committed."""
    names = [str(p) for p in paths]
    subprocess.run(["git", "add", "-f", "--", *names], check=True)
    if subprocess.run(["git", "diff", "--cached", "--quiet", "--", *names]).returncode == 0:
        return False  # nothing new (a rerun of a finished study)
    subprocess.run(["git", "commit", "-q", "-m", message, "--", *names], check=True)
    return True


def run_study(out: str | Path, *, protocol: str = "cnn", arms: Sequence[str] | None = None,
              seeds: int | Sequence[int] = 3, overrides: Iterable[str] = (), callbacks=None,
              commit: bool = False) -> dict:
    """Every planned run (finished ones skipped), then ``DIR/claim.json``; the summary. Stops at a stopped run."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ignore = out / ".gitignore"
    if not ignore.is_file():
        write_text(ignore, "work/\n")
    overrides = list(overrides)
    for protocol_, arm, seed in plan(protocol, arms, seeds):
        if run_one(out, protocol_, arm, seed, overrides=overrides, callbacks=callbacks, commit=commit) is None:
            break  # stopped from outside: leave the rest for the next invocation
    summary = write_summary(out)
    if commit:
        sources = sorted((out / "sources").glob("*")) if protocol in FINETUNE else []
        commit_files([ignore, out / "claim.json", *sources], f"claim: summary of {len(summary['runs'])} runs")
    return summary

