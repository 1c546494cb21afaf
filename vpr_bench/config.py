"""Typed configuration, one dataclass per concern, filled from a preset and then CLI overrides.

The whole resolved ``RunConfig`` is written to each run's ``config.json``.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpr_bench.errors import ConfigError


@dataclass
class DataConfig:
    dataset: str = "synthetic"
    data_root: str | None = None
    struct_dir: str | None = None
    layout: str = "auto"
    image_size: tuple[int, int] = (224, 224)  # (H, W) fed to the network
    preprocess: str = "resize-first"  # or tensor-resize-first, normalize-first (see datasets/images.py)
    interpolation: str = "bilinear"  # or bicubic
    pos_radius: float | None = None  # None → the dataset's own (25 m for NetVLAD .mat files)
    train_pos_radius: float | None = None
    drop_queries_without_positives: bool = False  # True reproduces the STUN/TSCM release
    cities: str | None = None  # MSLS: comma-separated cities, in order; None → the split's own


@dataclass
class ModelConfig:
    method: str = "gem"
    backbone: str = "resnet50"
    backbone_stage: int | None = None  # timm features_only index; None = last stage
    pretrained: bool = True
    pretrained_file: str | None = None
    descriptor_dim: int | None = None  # optional projection size
    options: dict[str, Any] = field(default_factory=dict)  # method-specific settings


@dataclass
class EvalConfig:
    split: str = "test"
    batch_size: int = 32
    num_workers: int = 2
    recall_at: tuple[int, ...] = (1, 5, 10, 20)
    device: str = "auto"
    index: str = "flat"  # flat (exact) or ivfpq (approximate: --nlist cells, --m sub-quantisers)
    nlist: int = 1024
    m: int = 64
    nprobe: int = 16
    descriptor_dtype: str = "float32"  # float16: half the memory for database descriptors and index


@dataclass
class TrainConfig:
    """Triplet training with partial hard-negative mining; defaults are the paper's (release) values."""

    epochs: int = 200
    optimizer: str = "adam"
    lr: float = 1e-5
    weight_decay: float = 1e-3
    lr_gamma: float = 0.99  # ExponentialLR, per epoch
    batch_size: int = 8  # tuples (1 query, 1 positive, ``negatives`` negatives) per batch
    negatives: int = 10
    negative_samples: int = 1000
    margin: float = 0.1
    mining_margin: float | None = None  # None → √margin, as in NetVLAD's mining rule
    loss: str = "triplet"
    distance: str = "l2"
    reduction: str = "mean"  # sum over triplets / number of negatives in the batch
    cache_refresh: int = 0  # iterations between descriptor-cache refreshes; 0 → once per epoch
    patience: int = 10  # epochs without a val R@1 gain before stopping
    checkpoint_every: int = 50  # iterations between mid-epoch checkpoints
    queries_per_epoch: int = 0  # 0 → every training query with a non-trivial positive
    tensorboard: bool = False  # also log the curves of training.csv as TensorBoard events in the run folder
    log_dir: str | None = None  # TensorBoard events under <log_dir>/<dataset>/<method>/<run-id> instead


@dataclass
class DistillConfig:
    """Knowledge distillation, for methods that train a student from a frozen teacher (e.g. ``tscm``)."""

    teacher: str | None = None  # a teacher run folder or weights file; None → the pipeline trains one
    kd_loss: str | None = None  # a name from the kd-loss registry; None → the method's default
    kd_weight: float = 1.0  # weight of the distillation term beside the student's own triplet loss
    mining_space: str = "teacher"  # mine the student's tuples in the teacher's or the student's space


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    preset: str = "demo"
    seed: int = 1234
    out: str = "results"
    quiet: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """The inverse of ``to_dict`` (e.g. from a run's config.json); unknown keys are ignored."""
        sections = SECTIONS
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            value = values[f.name]
            if f.name in sections:
                known = {g.name for g in dataclasses.fields(sections[f.name])}
                value = sections[f.name](**{k: v for k, v in value.items() if k in known})
            kwargs[f.name] = value
        cfg = cls(**kwargs)
        cfg.data.image_size = tuple(cfg.data.image_size)
        cfg.eval.recall_at = tuple(cfg.eval.recall_at)
        return cfg

    def validate(self) -> None:
        checks = [
            (self.eval.batch_size >= 1, "--eval-batch-size must be ≥ 1"),
            (self.train.batch_size >= 1, "--batch-size must be ≥ 1"),
            (self.train.epochs >= 1, "--epochs must be ≥ 1"),
            (self.train.lr > 0, "--lr must be > 0"),
            (self.train.negatives >= 1, "--negatives must be ≥ 1"),
            (self.train.negative_samples >= self.train.negatives, "--negative-samples must be ≥ --negatives"),
            (self.train.margin > 0, "--margin must be > 0"),
            (self.train.cache_refresh >= 0, "--cache-refresh must be ≥ 0"),
            (self.train.patience >= 1, "--patience must be ≥ 1"),
            (self.train.checkpoint_every >= 1, "--checkpoint-every must be ≥ 1"),
            (self.train.queries_per_epoch >= 0, "--queries-per-epoch must be ≥ 0"),
            (self.train.optimizer in ("adam", "sgd"), "--optimizer must be adam or sgd"),
            (self.eval.num_workers >= 0, "--num-workers must be ≥ 0"),
            (
                all(n >= 1 for n in self.eval.recall_at) and self.eval.recall_at,
                "--recall-at needs values ≥ 1",
            ),
            (
                all(s >= 8 for s in self.data.image_size) or tuple(self.data.image_size) == (0, 0),
                "--image-size must be at least 8×8 (or native)",
            ),
            (
                self.data.preprocess in ("resize-first", "tensor-resize-first", "normalize-first"),
                "--preprocess must be resize-first, tensor-resize-first or normalize-first",
            ),
            (
                self.data.interpolation in ("bilinear", "bicubic"),
                "--interpolation must be bilinear or bicubic",
            ),
            (self.data.pos_radius is None or self.data.pos_radius > 0, "--pos-radius must be > 0"),
            (
                self.data.train_pos_radius is None or self.data.train_pos_radius > 0,
                "--train-pos-radius must be > 0",
            ),
            (self.train.mining_margin is None or self.train.mining_margin > 0, "--mining-margin must be > 0"),
            (
                self.train.distance in ("l2", "squared-l2", "cosine"),
                "--distance must be l2, squared-l2 or cosine",
            ),
            (
                self.train.reduction in ("mean", "sum", "avg-nonzero"),
                "--reduction must be mean, sum or avg-nonzero",
            ),
            (
                self.eval.device in ("auto", "cpu", "cuda") or self.eval.device.startswith("cuda:"),
                "--device must be auto, cpu, cuda or cuda:N",
            ),
            (self.eval.index in ("flat", "ivfpq"), "--index must be flat or ivfpq"),
            (
                self.eval.descriptor_dtype in ("float32", "float16"),
                "--descriptor-dtype must be float32 or float16",
            ),
            (min(self.eval.nlist, self.eval.m, self.eval.nprobe) >= 1, "--nlist, --m, --nprobe must be ≥ 1"),
            (self.distill.kd_weight >= 0, "--kd-weight must be ≥ 0"),
            (
                self.distill.mining_space in ("teacher", "student"),
                "--mining-space must be teacher or student",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


PRESETS: dict[str, dict[str, Any]] = {
    # Small backbone and images, trained from scratch (no weights can be downloaded on a fresh CPU
    # machine): a higher learning rate without weight decay, fewer negatives, 200 queries an epoch.
    # The whole `make run` finishes in minutes on 2 CPU cores.
    "demo": {
        "data.image_size": (48, 64),
        "model.backbone": "resnet18",
        "model.backbone_stage": 3,
        "eval.batch_size": 32,
        "train.lr": 1e-3,
        "train.weight_decay": 0.0,
        "train.negatives": 3,
        "train.queries_per_epoch": 200,
        # one budget for every method, so the demo's leaderboard compares like with like: `make run`
        # (TSCM teacher + student, both tested) must stay under 10 minutes on 2 cores. From scratch,
        # val R@1 is noisy in the first epochs: no early stop inside the budget.
        "train.epochs": 12,
        "train.patience": 12,
    },
    # The paper's setting (TSCM release defaults): 224×224, ResNet-50 cut after layer3 (stride 16),
    # Adam 1e-5, weight decay 1e-3, γ 0.99, 8 tuples of 10 negatives, up to 200 epochs, patience 10.
    "paper": {
        "data.image_size": (224, 224),
        "model.backbone": "resnet50",
        "model.backbone_stage": 3,
        "eval.batch_size": 32,
    },
}
# A method's own values for a preset (its model sizes, say) are registered with the method
# (``register_method(..., presets={"demo": {...}})``) and applied over these.


def apply(cfg: RunConfig, values: dict[str, Any], skip_none: bool = True) -> RunConfig:
    """Set dotted ``section.field`` values (None means "not given": keep what is there, unless
    ``skip_none`` is False: a config file's ``null`` is a value)."""
    for key, value in values.items():
        if value is None and skip_none:
            continue
        target = cfg
        *path, name = key.split(".")
        for part in path:
            target = getattr(target, part)
        if not hasattr(target, name):
            raise ConfigError(f"unknown setting {key!r}")
        current = getattr(target, name)
        if isinstance(current, dict) and isinstance(value, dict):  # method options merge
            value = {**current, **value}
        setattr(target, name, value)
    return cfg


def apply_file_settings(cfg: RunConfig, settings: dict[str, Any]) -> RunConfig:
    """Set what a checkpoint file decides; its ``model.options`` replace the options (not merged into
    them: a preset's options for another variant must not survive)."""
    apply(cfg, {k: v for k, v in settings.items() if k != "model.options"})
    if "model.options" in settings:
        cfg.model.options = copy.deepcopy(settings["model.options"])
    return cfg


def check_against_file(given: dict[str, Any], from_file: dict[str, Any]) -> None:
    """A model setting given that differs from what the checkpoint file decides fails, naming both."""
    for key, value in from_file.items():
        if not key.startswith("model."):
            continue
        mine = given.get(key)
        if key == "model.options":
            for name, option in (mine or {}).items():
                if name in value and str(option).lower() != str(value[name]).lower():
                    raise ConfigError(
                        f"--model-option {name}={option} contradicts the checkpoint, which holds "
                        f"{name}={value[name]}; drop the option"
                    )
        elif mine is not None and mine != value:
            flag = "--" + key.split(".", 1)[1].replace("_", "-")
            raise ConfigError(f"{flag} {mine} contradicts the checkpoint, which holds {value}; drop {flag}")


def method_presets(method: str) -> dict[str, dict[str, Any]]:
    """The preset values a method (or pipeline) registered; none for an unknown name (it fails later,
    where the name is looked up)."""
    from vpr_bench.registry import METHODS, PIPELINES

    for registry in (PIPELINES, METHODS):
        if method in registry:
            return registry.get(method).attributes.get("presets", {})
    return {}


def resolve(
    preset: str,
    overrides: dict[str, Any],
    from_file: dict[str, Any] | None = None,
    config_file: dict[str, Any] | None = None,
) -> RunConfig:
    """Preset values, then the method's own preset values, then a ``--config`` file's settings
    (``config_file``, from ``read_config_file``; its ``preset`` is the caller's to choose), then what a
    checkpoint file decides (``from_file``: its architecture, input size, preprocessing), then the given
    ``overrides``. A model setting given that contradicts the checkpoint file fails."""
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r} is not one of {', '.join(PRESETS)}")
    config_file = {k: v for k, v in (config_file or {}).items() if k != "preset"}
    cfg = apply(RunConfig(preset=preset), copy.deepcopy(PRESETS[preset]))
    method = overrides.get("model.method") or config_file.get("model.method") or cfg.model.method
    apply(cfg, copy.deepcopy(method_presets(method).get(preset, {})))
    apply(cfg, copy.deepcopy(config_file), skip_none=False)
    if from_file:
        check_against_file(overrides, from_file)
        apply_file_settings(cfg, from_file)
    apply(cfg, overrides)
    cfg.validate()
    return cfg


# Top-level keys a run's config.json holds beside the settings (runner.train_run, results.store).
RECORD_KEYS = ("argv", "resume_argv", "environment", "record_extra")
SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "eval": EvalConfig,
    "train": TrainConfig,
    "distill": DistillConfig,
}
_INVALID = object()


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A ``--config`` file (a run's config.json, or a hand-written YAML or JSON file with its keys) as
    dotted settings for ``resolve``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    import json

    import yaml

    json_file = path.suffix.lower() == ".json"
    try:
        values = json.loads(text) if json_file else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        message = " ".join(str(exc).split())  # YAML's errors span lines; the CLI prints one
        raise ConfigError(
            f"--config {path}: not valid {'JSON' if json_file else 'YAML'}: {message}"
        ) from None
    return file_settings(values, f"--config {path}")


def file_settings(values: Any, source: str) -> dict[str, Any]:
    """``RunConfig.to_dict``-shaped ``values`` as dotted settings, each checked against its field's
    type. Unknown keys fail, naming ``source``, the key and the valid keys of its section; the keys a
    run's config.json adds (``RECORD_KEYS``) are skipped."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of sections ({', '.join(SECTIONS)}) and settings")
    top = typing.get_type_hints(RunConfig)
    settings: dict[str, Any] = {}
    for key, value in values.items():
        if key in RECORD_KEYS:
            continue
        if key not in top:
            valid = ", ".join(k for k in top if k not in SECTIONS)
            raise ConfigError(
                f"{source}: unknown key {key!r}; valid: the sections {', '.join(SECTIONS)}, and {valid}"
            )
        if key not in SECTIONS:
            settings[key] = _typed(source, key, top[key], value)
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping of settings, not {value!r}")
        hints = typing.get_type_hints(SECTIONS[key])
        for name, item in value.items():
            if name not in hints:
                raise ConfigError(
                    f"{source}: unknown key {name!r} in section {key}; valid keys of {key}: "
                    f"{', '.join(hints)}"
                )
            settings[f"{key}.{name}"] = _typed(source, f"{key}.{name}", hints[name], item)
    return settings


def _typed(source: str, key: str, hint: Any, value: Any) -> Any:
    """``value`` as the field's type (YAML reads ``1e-3`` as a string; lists become tuples), or a
    ConfigError naming the key."""
    if value is None:
        if type(None) in typing.get_args(hint):
            return None
        raise ConfigError(f"{source}: {key} must not be null")
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    for kind in [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]:
        converted = _convert(kind, value)
        if converted is not _INVALID:
            return converted
    expected = hint.__name__ if hint in (bool, int, float, str) else str(hint).replace("typing.", "")
    raise ConfigError(f"{source}: {key} = {value!r} is not {expected}")


def _convert(kind: Any, value: Any) -> Any:
    origin = typing.get_origin(kind) or kind
    if origin is bool or isinstance(value, bool):  # a bool is no number, a number no bool
        return value if origin is bool and isinstance(value, bool) else _INVALID
    if origin is int:
        return value if isinstance(value, int) else _INVALID
    if origin is float:
        try:
            return float(value) if isinstance(value, (int, float, str)) else _INVALID
        except ValueError:
            return _INVALID
    if origin is str:
        return value if isinstance(value, str) else _INVALID
    if origin is tuple:  # image_size (H, W), recall_at (N, ...)
        if not isinstance(value, (list, tuple)):
            return _INVALID
        args = typing.get_args(kind)
        kinds = [args[0]] * len(value) if Ellipsis in args else list(args)
        if len(value) != len(kinds):
            return _INVALID
        items = tuple(_convert(k, v) for k, v in zip(kinds, value, strict=True))
        return _INVALID if any(item is _INVALID for item in items) else items
    if origin is dict:
        return dict(value) if isinstance(value, dict) else _INVALID
    return value
