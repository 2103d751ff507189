"""What the training loop computes in small runs, recorded so that a change to the loop can be shown to change no number.

    python tests/train_equivalence.py record OUT.json [--ddp] [--claim]
    python tests/train_equivalence.py compare BEFORE.json AFTER.json

``record`` trains a set of small runs on a generated CIFAR-100 stand-in (a
DataLoader run, a TensorLoader run, an interrupted run resumed from its
checkpoint, a stopped run resumed, a run resumed to more epochs, AdamW with
bf16, gradient clipping and channels-last; ``--ddp``: two-process runs under
torchrun, DataLoader and TensorLoader; ``--claim``: the first epoch of the
claim study's cnn-plain-seed0 run on the real CIFAR-100, checked against its
committed record) and writes, per run, metrics.json without its timings, paths
and environment, a digest of the final checkpoint's weights, and what the
callbacks saw. ``compare`` reports every value of BEFORE that AFTER does not
reproduce exactly (keys AFTER adds are not compared). tests/test_lab_train.py
runs the single-process part against tests/data/train_equivalence.json (the
runs recorded before the loop's refactor), on the machine that recorded it.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# Timings, memory the OS reports, and paths: not a function of the run's numbers.
UNTIMED = {"step_s", "train_s", "wall_s", "images_per_s", "startup_s", "step_s_median", "peak_bytes"}
PATHS = {"out_dir", "data_dir"}


def machine() -> dict:
    """What float results depend on besides the code: torch's version and the CPU."""
    import platform

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"torch": torch.__version__, "cpu": cpu}


def strip(value, key=None):
    if isinstance(value, dict):
        return {k: strip(v, k) for k, v in value.items() if k not in UNTIMED and k not in PATHS and k != "environment"}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def weights_digest(path: Path) -> str:
    from dropit.lab.train import checkpoint as ckpt

    saved = ckpt.load_checkpoint(path)
    h = hashlib.sha256()
    for name, t in sorted(saved["model"].items()):
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class Seen:
    """Every TrainState field the callbacks read, at every event."""

    FIELDS = ("epoch", "step", "loss", "lr", "images", "epochs", "steps_per_epoch", "total_steps", "train_top1",
              "kept_bytes", "stop")

    def __init__(self, stop_at=None, interrupt_at=None):
        self.events, self.stop_at, self.interrupt_at = [], stop_at, interrupt_at

    def _see(self, event, state):
        row = {f: getattr(state, f) for f in self.FIELDS}
        row.update(event=event, rows=len(state.metrics), model=type(state.model).__name__,
                   final=sorted(state.final) if state.final else None)
        self.events.append(row)

    def on_step(self, state):
        self._see("step", state)
        if self.interrupt_at is not None and state.step == self.interrupt_at:
            raise KeyboardInterrupt
        if self.stop_at is not None and state.step >= self.stop_at:
            state.stop = True

    def on_epoch(self, state):
        self._see("epoch", state)

    def on_end(self, state):
        self._see("end", state)


def _cfg(data_root, out, **kw):
    from dropit.lab.train.config import RunConfig

    base = dict(model="resnet_mini", dataset="cifar100", data_dir=str(data_root), epochs=3, batch_size=40,
                lr=0.05, schedule="multistep", milestones=[2], lr_gamma=0.5, seed=3, out_dir=str(out),
                log_every=1000, threads=1, record_every=1)
    base.update(kw)
    return RunConfig(**base)


def _one(cfg, **seen_kw):
    from dropit.lab.train.loop import run

    seen = Seen(**seen_kw)
    try:
        metrics = run(cfg, callbacks=seen)
    except KeyboardInterrupt:
        metrics = None
    out = Path(cfg.out_dir)
    ck = out / "checkpoint.pt"
    on_disk = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else None
    return {"returned": strip(metrics), "metrics_json": strip(on_disk), "callbacks": seen.events,
            "weights": weights_digest(ck) if ck.is_file() else None}


def single_process(tmp: Path) -> dict:
    """The in-process scenarios; {name: record}."""
    from lab_fakes import write_cifar100

    data = tmp / "data"
    write_cifar100(data, n_train=160, n_test=100)
    runs = {}
    runs["dataloader"] = _one(_cfg(data, tmp / "dl"))
    kw = dict(dropit=True, dropit_strategy="random", dropit_gamma=0.5)
    runs["interrupted"] = _one(_cfg(data, tmp / "cut", **kw), interrupt_at=6)
    runs["interrupted_resumed"] = _one(_cfg(data, tmp / "cut", resume=True, **kw))
    runs["stopped"] = _one(_cfg(data, tmp / "stop", dropit=True, dropit_gamma=0.8), stop_at=5)
    runs["stopped_resumed"] = _one(_cfg(data, tmp / "stop", dropit=True, dropit_gamma=0.8, resume=True))
    runs["short"] = _one(_cfg(data, tmp / "more", epochs=2, schedule="cosine", warmup_epochs=0.5))
    runs["short_resumed_longer"] = _one(_cfg(data, tmp / "more", epochs=3, schedule="cosine", warmup_epochs=0.5,
                                             resume=True))
    runs["tensor_loader"] = _one(_cfg(data, tmp / "tl", data_on_device=True, dropit=True, dropit_gamma=0.8,
                                      dropit_strategy="mink", eval_every=2, label_smoothing=0.1, nesterov=True,
                                      eval_batch_size=30, max_steps=10, cache_batch=16))
    runs["adamw_bf16"] = _one(_cfg(data, tmp / "adamw", optimizer="adamw", lr=1e-3, weight_decay=0.05, amp="bf16",
                                   grad_clip=1.0, channels_last=True, max_steps=6, record_every=2, epochs=2))
    return runs


def ddp(tmp: Path) -> dict:
    """Two processes under torchrun (gloo): the DataLoader and the TensorLoader path."""
    from lab_fakes import write_cifar100

    data = tmp / "ddp_data"
    write_cifar100(data, n_train=160, n_test=101)
    runs = {}
    for name, extra in (("ddp_dataloader", []), ("ddp_tensor_loader", ["data_on_device=true"])):
        out = tmp / name
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "dropit.lab.train", "model=resnet_mini", f"data_dir={data}", f"out_dir={out}",
               "epochs=2", "batch_size=40", "lr=0.05", "dropit=true", "dropit_gamma=0.9", "log_every=1000", "seed=1",
               "record_every=1", *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        if proc.returncode:
            raise SystemExit(f"{name} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        runs[name] = {"metrics_json": strip(json.loads((out / "metrics.json").read_text())),
                      "weights": weights_digest(out / "checkpoint.pt")}
    return runs


def claim_epoch(tmp: Path) -> dict:
    """The first epoch of the claim study's cnn-plain-seed0 on the real CIFAR-100, and the committed record's."""
    from dropit.lab.claim.study import run_config
    from dropit.lab.train.loop import run

    cfg = run_config("cnn", "plain", seed=0, out_dir=tmp / "claim", overrides=["max_steps=390", "checkpoint=false"])
    metrics = run(cfg)
    committed = json.loads((HERE.parent / "docs/claim/runs/cnn-plain-seed0.json").read_text())["epochs"][0]
    keys = ("steps", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5")
    mine = {k: metrics["epochs"][0][k] for k in keys}
    return {"claim_cnn_plain_seed0_epoch1": {"run": mine, "committed": {k: committed[k] for k in keys},
                                             "equal": mine == {k: committed[k] for k in keys}}}


def record(out: Path, with_ddp: bool, with_claim: bool) -> dict:
    torch.use_deterministic_algorithms(False)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs = single_process(tmp)
        if with_ddp:
            runs.update(ddp(tmp))
        if with_claim:
            runs.update(claim_epoch(tmp))
    doc = {"machine": machine(), "runs": runs}
    out.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str))
    return doc


def differences(before, after, where="") -> list[str]:
    """Every value of ``before`` that ``after`` does not hold exactly (keys only ``after`` has are ignored)."""
    if isinstance(before, dict):
        if not isinstance(after, dict):
            return [f"{where}: {before!r} -> {after!r}"]
        out = []
        for k, v in before.items():
            if k not in after:
                out.append(f"{where}.{k}: missing")
            else:
                out += differences(v, after[k], f"{where}.{k}")
        return out
    if isinstance(before, list):
        if not isinstance(after, list) or len(before) != len(after):
            return [f"{where}: length {len(before)} -> {len(after) if isinstance(after, list) else after!r}"]
        return [d for i, (a, b) in enumerate(zip(before, after)) for d in differences(a, b, f"{where}[{i}]")]
    same = before == after or (before != before and after != after)  # NaN equals NaN here
    return [] if same else [f"{where}: {before!r} -> {after!r}"]


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "record":
        doc = record(Path(argv[1]), "--ddp" in argv, "--claim" in argv)
        claim = doc["runs"].get("claim_cnn_plain_seed0_epoch1")
        print(f"recorded {len(doc['runs'])} runs into {argv[1]}" + (f"; claim epoch 1 equal: {claim['equal']}" if claim else ""))
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        a, b = (json.loads(Path(p).read_text())["runs"] for p in argv[1:])
        diffs = differences(a, b)
        print("\n".join(diffs[:50]) or f"all {len(a)} runs equal ({', '.join(a)})")
        return 1 if diffs else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
