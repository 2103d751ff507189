"""The fine-tuning protocols' source checkpoints: made once per model when missing, checked before every use.

    path = ensure_source(Path("docs/claim"), "cnn_ft")   # DIR/sources/cnn_source.pt (+ .json), trained if absent

A source is plain training on CIFAR-100's classes 0-49 with the model's recipe
(``params/claim_<model>_source.yaml``, seed 0): deterministic, and resumable
like any run (its work folder is ``DIR/work/<model>_source``). When it
finishes, its weights are written to ``DIR/sources/<model>_source.pt`` and a
small JSON beside it records their sha256, the classes, the recipe and the
top-1 reached on the source's test classes. Every fine-tuning run checks the
file against that hash and the model's architecture before it trains, and its
own JSON records the hash.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from dropit.lab.claim.protocols import FINETUNE, PARAMS, params_file
from dropit.lab.data.datasets import class_range
from dropit.lab.io import write_json
from dropit.lab.models.catalog import build_model
from dropit.lab.train.config import RunConfig, load_config
from dropit.lab.train.loop import run


def source_name(protocol: str) -> str:
    """``"cnn_source"`` for ``"cnn_ft"``."""
    if protocol not in FINETUNE:
        raise ValueError(f"{protocol!r} is not a fine-tuning protocol; choose one of {', '.join(FINETUNE)}")
    return f"{FINETUNE[protocol]}_source"


def source_config(protocol: str, out: Path, overrides=()) -> RunConfig:
    """The source's recipe, its work folder under ``out/work``; ``overrides`` (key=value) last."""
    name = source_name(protocol)
    return load_config(PARAMS / f"claim_{name}.yaml", [f"out_dir={out / 'work' / name}", "resume=true", *overrides])


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_disjoint(source_classes: str, target_classes: str, dataset: str = "cifar100") -> None:
    """ValueError unless the source's and the target's classes are disjoint (the target is a new task)."""
    both = set(class_range(source_classes, dataset)) & set(class_range(target_classes, dataset))
    if both:
        raise ValueError(f"the source's classes {source_classes} and the target's {target_classes} overlap in "
                         f"{len(both)} classes ({min(both)}-{max(both)}): a fine-tuning target must be new classes")


def check_source(path: Path, target: RunConfig) -> str:
    """The source file's sha256, after checking it against its JSON's hash, ``target``'s architecture and class
    split; ValueError naming the file and the fix otherwise. Trains nothing."""
    path, record = Path(path), Path(path).with_suffix(".json")
    if not path.is_file() or not record.is_file():
        raise ValueError(f"source checkpoint {path} (or its record {record.name}) is missing: run the study, which "
                         "makes it, or restore both from git")
    saved = json.loads(record.read_text())
    digest = sha256(path)
    if digest != saved["sha256"]:
        raise ValueError(f"source checkpoint {path} does not match its record {record.name} (sha256 {digest[:12]}... "
                         f"against {saved['sha256'][:12]}...): restore both with `git checkout -- {path.parent}`, "
                         "or delete both to train the source again")
    if saved["model"] != target.model:
        raise ValueError(f"source checkpoint {path} is a {saved['model']}, the protocol fine-tunes a {target.model}: "
                         "delete both files to train the right source")
    check_disjoint(saved["classes"], target.classes, target.dataset)
    model = build_model(target.model, len(class_range(saved["classes"], target.dataset)), patch_size=target.patch_size)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    except RuntimeError as e:
        raise ValueError(f"source checkpoint {path} does not fit {target.model} ({str(e).splitlines()[0]}): delete "
                         "both files to train the source again") from None
    return digest


def ensure_source(out: Path, protocol: str, *, overrides=(), callbacks=None) -> Path | None:
    """``out/sources/<model>_source.pt``, trained first when it is missing (resuming an interrupted source);
    None if that training was stopped from outside."""
    out = Path(out)
    path = out / "sources" / f"{source_name(protocol)}.pt"
    if path.is_file():
        return path
    cfg = source_config(protocol, out, overrides)
    target = load_config(params_file(protocol))
    check_disjoint(cfg.classes, target.classes, cfg.dataset)
    metrics = run(cfg, callbacks=callbacks)
    if metrics["status"] != "done":
        return None
    state = torch.load(Path(cfg.out_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".pt.partial")
    torch.save(state, partial)
    partial.replace(path)  # atomic: never a half-written source
    write_json(path.with_suffix(".json"), {
        "protocol": protocol, "model": cfg.model, "classes": cfg.classes, "sha256": sha256(path),
        "top1_source_classes": metrics["final"]["top1"], "top5_source_classes": metrics["final"]["top5"],
        "epochs": cfg.epochs, "seed": cfg.seed, "recipe": f"claim_{source_name(protocol)}.yaml",
    })
    return path
