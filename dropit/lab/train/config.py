"""Run parameters: the ``RunConfig`` dataclass and the YAML/command-line loader.

Every knob of a training run is a field of :class:`RunConfig`; a parameter file
in ``params/`` sets some of them and the command line may override any::

    cfg = load_config("params/smoke.yaml", ["epochs=3", "dropit=false"])

Values are checked and coerced to the field's type (``epochs=3`` from the
command line is an int, ``lr=1e-3`` a float, ``milestones=[60,120]`` a list of
ints). A malformed file, an unknown key or a bad value raises
:class:`ConfigError` naming the key, the file and the valid choices, before any
work starts.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

import yaml

from dropit.lab.models.catalog import MODEL_NAMES
from dropit.strategies import STRATEGIES, check_gamma

MODELS = MODEL_NAMES  # dropit.lab.models.catalog's; the deit_* are timm's
DATASETS = ("cifar100", "imagenet", "imagenette")
CHOICES: dict[str, tuple[str, ...]] = {
    "model": MODELS,
    "dataset": DATASETS,
    "optimizer": ("sgd", "adamw"),
    "schedule": ("multistep", "cosine", "constant"),
    "amp": ("none", "bf16", "fp16"),
    "dropit_strategy": tuple(STRATEGIES),
    "mean_std": ("dataset", "half", "imagenet"),
}


class ConfigError(ValueError):
    """A parameter file or override that cannot be used; the message says why."""


@dataclass
class RunConfig:
    """All parameters of one training run (defaults: the paper's CIFAR-100 ResNet-18 recipe)."""

    # what to train
    model: str = "resnet18_cifar"  # one of MODELS
    dataset: str = "cifar100"  # cifar100 | imagenet | imagenette
    data_dir: Optional[str] = None  # else $DROPIT_DATA, else ./data
    download: bool = True  # fetch CIFAR-100 / Imagenette / pretrained weights where absent; false: never download
    subset: Optional[int] = None  # train on this many images, class-balanced, deterministic
    val_subset: Optional[int] = None  # evaluate on this many images, class-balanced
    classes: Optional[str] = None  # "A-B": CIFAR-100's classes A..B only (inclusive), relabelled 0..B-A
    image_size: Optional[int] = None  # default: 32 for CIFAR-100, 224 for ImageNet
    patch_size: Optional[int] = None  # ViT patch size (vit_tiny default: image_size // 8)
    mean_std: str = "dataset"  # normalisation: dataset statistics, 0.5/0.5, or ImageNet's
    crop_scale_min: float = 0.08  # RandomResizedCrop's lower scale bound
    data_on_device: bool = False  # CIFAR-100 at 32x32 only: images as one uint8 tensor on the device, crop/flip/normalise per batch there
    pretrained: Optional[str] = None  # a local state_dict file, or by name: torchvision:<Enum>.<member> | timm:<model>.<tag>
    weights_dir: Optional[str] = None  # cache of named weights; else $DROPIT_WEIGHTS, else $TORCH_HOME/hub/checkpoints
    fresh_head: bool = False  # with pretrained: the classifier keeps its own fresh initialisation (a new task)
    label: str = ""  # free text saying what ran, shown in the tables

    # optimisation
    epochs: int = 200
    batch_size: int = 128  # global: divided among DDP processes
    eval_batch_size: Optional[int] = None  # default: batch_size
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    head_lr_scale: float = 1.0  # the classifier's learning rate, as a multiple of lr (fine-tuning)
    momentum: float = 0.9  # SGD momentum; AdamW beta1
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "multistep"  # multistep | cosine (after warm-up) | constant
    milestones: list[int] = field(default_factory=lambda: [60, 120, 160])  # epochs
    lr_gamma: float = 0.2  # multistep factor
    warmup_epochs: float = 0.0  # linear warm-up from 0, any schedule
    min_lr: float = 0.0  # cosine floor
    label_smoothing: float = 0.0
    grad_clip: Optional[float] = None  # max global grad norm
    amp: str = "none"  # none | bf16 | fp16 (fp16 needs CUDA)
    compile: bool = False  # train torch.compile(model) (graph breaks allowed); evaluation stays eager
    compile_memory_budget: Optional[float] = None  # [0, 1]: the compiler's activation memory budget (needs compile)
    channels_last: bool = False  # model and input batches in channels-last memory format

    # DropIT (fields named dropit_*: the explore bench names a run by every one off its default)
    dropit: bool = False
    dropit_gamma: float = 0.9
    dropit_strategy: str = "mink"
    dropit_exclude: Optional[list[str]] = None  # fnmatch patterns left dense; None: first conv + classifier
    dropit_relu_mask: bool = True  # ReLUs keep a 1-bit mask so the drop really frees memory
    dropit_quantize: Optional[str] = None  # "int8"/"int4": norms, activations, attention keep quantized inputs (lossy)

    # run control
    seed: int = 42
    out_dir: str = "runs/default"
    resume: bool = False  # continue from <out_dir>/checkpoint.pt if present
    checkpoint: bool = True  # write <out_dir>/checkpoint.pt every epoch
    num_workers: int = 0
    threads: Optional[int] = None  # torch.set_num_threads, if given
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_every: int = 1  # evaluate every N epochs (and always after the last)
    max_steps: Optional[int] = None  # stop after this many optimizer steps in all (demos, tests)
    cache_batch: Optional[int] = None  # images for the cache meter; default batch_size (capped at 128)
    log_every: int = 50  # steps between plain log lines
    record_every: int = 10  # steps between metrics.json's per-step records (loss, train top-1, kept bytes); 0: none
    paper_row: Optional[str] = None  # id of the paper row this run stands for (tables); inferred if None

    sources = None  # not a field: where the values came from (a Sources), set by load_config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# How a run is carried out and recorded, not what it learns: runs that differ only in these learn the same
# weights. The one list; a resumed run may also change its length and execution (loop.RESUMABLE), and the
# explore bench counts runs that differ in these and the seed as repeats.
RUN_CONTROL = frozenset({"out_dir", "label", "resume", "checkpoint", "num_workers", "threads", "device", "log_every",
                         "record_every", "cache_batch", "paper_row", "download", "data_dir", "weights_dir",
                         "eval_every", "eval_batch_size"})


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


_HINTS = typing.get_type_hints(RunConfig)


COMMAND_LINE = "the command line"


def _where(key: str, source: "str | Mapping[str, str] | Sources | None") -> str:
    """``'lr' (in params/smoke.yaml)`` or ``'lr' (from the command line)``: where the key's value came from.

    ``source`` is one origin for every key, a mapping from key to origin (a file, or :data:`COMMAND_LINE`), or
    a :class:`Sources`, which names the chain when the key came from a base file
    (``'lr' (in params/plain.yaml, a base of params/dropit.yaml)``).
    """
    if isinstance(source, Sources):
        source = source.where(key)
    elif isinstance(source, Mapping):
        source = source.get(key.split("[")[0])
    if not source:
        return f"{key!r}"
    return f"{key!r} (from {source})" if source == COMMAND_LINE else f"{key!r} (in {source})"


def _coerce(key: str, value: Any, hint: Any, source: str | None) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~")):
            return None
        return _coerce(key, value, args[0], source)
    bad = ConfigError(f"parameter {_where(key, source)} must be {_type_name(hint)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise bad
        return [_coerce(f"{key}[{i}]", v, item, source) for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        raise bad
    if hint is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if hint is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    raise bad


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return f"{_type_name(args[0])} or null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _unknown(key: str, source: str | None) -> ConfigError:
    names = field_names()
    close = difflib.get_close_matches(key, names, n=1)
    if f"dropit_{key}" in names:  # "gamma=0.5": a DropIT user means dropit_gamma, not lr_gamma
        close = [f"dropit_{key}"] + [f"or {c!r}" for c in close if c != f"dropit_{key}"]
    hint = f" Did you mean {close[0]!r}{''.join(f' ({c})' for c in close[1:])}?" if close else ""
    return ConfigError(
        f"unknown parameter {_where(key, source)}.{hint} Valid keys: {', '.join(sorted(names))}"
    )


def validate(cfg: RunConfig, source: str | Mapping[str, str] | None = None) -> RunConfig:
    """Check choices and ranges; raises ConfigError naming the key."""
    for key, choices in CHOICES.items():
        if getattr(cfg, key) not in choices:
            raise ConfigError(
                f"parameter {_where(key, source)} = {getattr(cfg, key)!r} is not one of {', '.join(choices)}"
            )
    positive = ["epochs", "batch_size", "eval_every", "log_every"]
    for key in positive + ["subset", "val_subset", "image_size", "patch_size", "max_steps", "eval_batch_size", "cache_batch", "threads"]:
        v = getattr(cfg, key)
        if v is not None and v <= 0:
            raise ConfigError(f"parameter {_where(key, source)} must be positive, got {v}")
    try:
        check_gamma(cfg.dropit_gamma, where=f"parameter {_where('dropit_gamma', source)}")  # the core's rule
    except ValueError as e:
        raise ConfigError(str(e)) from None
    from dropit import QUANTIZE_LEVELS

    if cfg.dropit_quantize is not None and cfg.dropit_quantize not in QUANTIZE_LEVELS:
        raise ConfigError(
            f"parameter {_where('dropit_quantize', source)} = {cfg.dropit_quantize!r} is not one of "
            f"null, {', '.join(QUANTIZE_LEVELS)}"
        )
    if cfg.compile_memory_budget is not None:
        if not 0.0 <= cfg.compile_memory_budget <= 1.0:
            raise ConfigError(f"parameter {_where('compile_memory_budget', source)} must be in [0, 1] (the fraction of "
                              f"the forward the compiler keeps for backward), got {cfg.compile_memory_budget}")
        if not cfg.compile:
            raise ConfigError(f"parameter {_where('compile_memory_budget', source)} needs compile: true "
                              "(it is the compiler's budget); set compile=true or drop the budget")
    if cfg.lr <= 0:
        raise ConfigError(f"parameter {_where('lr', source)} must be positive, got {cfg.lr}")
    for key in ("weight_decay", "momentum", "label_smoothing", "warmup_epochs", "min_lr", "num_workers", "record_every"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"parameter {_where(key, source)} must be >= 0, got {getattr(cfg, key)}")
    if cfg.grad_clip is not None and cfg.grad_clip <= 0:
        raise ConfigError(f"parameter {_where('grad_clip', source)} must be positive or null, got {cfg.grad_clip}")
    if cfg.data_on_device and (cfg.dataset != "cifar100" or (cfg.image_size or 32) != 32):
        raise ConfigError(f"parameter {_where('data_on_device', source)}: true needs dataset cifar100 at image_size 32 "
                          f"(got {cfg.dataset} at {cfg.image_size}); set it to false for other data")
    if not 0.0 < cfg.crop_scale_min <= 1.0:
        raise ConfigError(f"parameter {_where('crop_scale_min', source)} must be in (0, 1], got {cfg.crop_scale_min}")
    if sorted(cfg.milestones) != cfg.milestones:
        raise ConfigError(f"parameter {_where('milestones', source)} must be increasing, got {cfg.milestones}")
    if cfg.head_lr_scale <= 0:
        raise ConfigError(f"parameter {_where('head_lr_scale', source)} must be positive, got {cfg.head_lr_scale}")
    if cfg.fresh_head and not cfg.pretrained:
        raise ConfigError(f"parameter {_where('fresh_head', source)} needs pretrained weights (every layer is fresh "
                          "without them); set pretrained or drop fresh_head")
    if cfg.classes is not None:
        from dropit.lab.data.datasets import class_range

        try:
            class_range(cfg.classes, cfg.dataset)
        except ValueError as e:
            raise ConfigError(f"parameter {_where('classes', source)}: {e}") from None
    _check_pretrained(cfg.pretrained, source)
    return cfg



def _check_pretrained(spec: str | None, source: str | None) -> None:
    """A named ``pretrained`` must be one torchvision or timm publishes with a hash (no network needed)."""
    from dropit.lab.models.weights import is_remote, remote

    if spec and is_remote(spec):
        try:
            remote(spec)
        except ValueError as e:
            raise ConfigError(f"parameter {_where('pretrained', source)}: {e}") from None


def from_dict(values: dict[str, Any], source: str | Mapping[str, str] | None = None) -> RunConfig:
    """A validated RunConfig from a mapping; unknown keys and bad values raise ConfigError."""
    names = set(field_names())
    kwargs = {}
    for key, value in values.items():
        if not isinstance(key, str) or key not in names:
            raise _unknown(str(key), source)
        kwargs[key] = _coerce(key, value, _HINTS[key], source)
    return validate(RunConfig(**kwargs), source)


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """``["epochs=3", "dropit=true"]`` -> ``{"epochs": 3, "dropit": True}`` (YAML scalars)."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip().removeprefix("--")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        if key not in _HINTS:
            raise _unknown(key, COMMAND_LINE)
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            out[key] = raw
        if out[key] is not None and _HINTS[key] in (str, Optional[str]):
            out[key] = raw  # keep strings verbatim (e.g. label=2 epochs)
    return out


BASE_KEY = "base"  # a parameter file's "base: other.yaml": start from that file's values, then set this file's


@dataclass
class Sources:
    """Where a configuration's values came from: the chain of parameter files and, per key, the file that set it.

    ``chain`` runs from the file named to the last base (``[dropit.yaml, plain.yaml]``); ``keys`` maps each key
    set by a file or the command line to that file or :data:`COMMAND_LINE` (keys at their default are absent).
    """

    chain: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)

    def where(self, key: str) -> str | None:
        """The origin of ``key`` for :func:`_where`, naming the chain when a base file set it."""
        origin = self.keys.get(key.split("[")[0])
        if origin and origin != COMMAND_LINE and self.chain and origin != self.chain[0]:
            return f"{origin}, a base of {' -> '.join(self.chain[:self.chain.index(origin)])}"
        return origin

    def to_dict(self) -> dict[str, Any]:
        return {"chain": list(self.chain), "keys": dict(sorted(self.keys.items()))}


def _read_mapping(path: Path, source: str) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read parameter file {source}: {e.strerror or e}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"parameter file {source} is not valid YAML: {e}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"parameter file {source} must be a mapping of key: value, got {type(loaded).__name__}")
    return loaded


def read_chain(path: str | Path) -> tuple[dict[str, Any], Sources]:
    """The values of a parameter file and of its bases (``base: file.yaml``, relative to the file's folder),
    each file's over its base's; and where each came from. A missing base or a cycle raises ConfigError."""
    chain: list[str] = []
    layers: list[dict[str, Any]] = []
    current: Path | None = Path(path)
    named = str(path)
    while current is not None:
        source = named if not chain else str(current)
        if any(Path(c).resolve() == current.resolve() for c in chain):
            loop = " -> ".join(chain + [source])
            raise ConfigError(f"parameter file {chain[0]} has a cycle of bases ({loop}): a file cannot be its own "
                              f"base; remove the '{BASE_KEY}:' line that closes the cycle")
        if chain and not current.is_file():
            raise ConfigError(f"parameter file {chain[-1]} names '{BASE_KEY}: {layers[-1][BASE_KEY]}', but there is no "
                              f"file {current}; the base is read relative to {Path(chain[-1]).parent or '.'}: "
                              f"fix the name or remove the '{BASE_KEY}:' line")
        loaded = _read_mapping(current, source)
        for key in loaded:
            if key != BASE_KEY and (not isinstance(key, str) or key not in _HINTS):
                raise _unknown(str(key), source)
        chain.append(source)
        layers.append(loaded)
        base = loaded.get(BASE_KEY)
        if base is not None and (not isinstance(base, str) or not base.strip()):
            raise ConfigError(f"parameter file {source}: '{BASE_KEY}' must name one parameter file, got {base!r}")
        current = current.parent / base if base is not None else None
    values: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for source, layer in zip(reversed(chain), reversed(layers)):  # the last base first, the file named last
        for key, value in layer.items():
            if key != BASE_KEY:
                values[key], keys[key] = value, source
    return values, Sources(chain, keys)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a YAML parameter file (a flat mapping of RunConfig keys, and ``base: file.yaml`` to extend another)
    and apply ``key=value`` overrides. The result's ``sources`` (:class:`Sources`) says which file set which key."""
    values, sources = read_chain(path) if path is not None else ({}, Sources())
    over = parse_overrides(overrides)
    for key, value in over.items():  # check each override against its own type first
        _coerce(key, value, _HINTS[key], COMMAND_LINE)
    values.update(over)
    sources.keys.update({key: COMMAND_LINE for key in over})
    cfg = from_dict(values, sources)
    cfg.sources = sources
    return cfg


def as_config(config: RunConfig | dict | str | Path) -> RunConfig:
    """Accept a RunConfig, a dict of its fields or a parameter file path."""
    if isinstance(config, RunConfig):
        copy = validate(dataclasses.replace(config))
        copy.sources = getattr(config, "sources", None)
        return copy
    if isinstance(config, dict):
        return from_dict(config)
    return load_config(config)
