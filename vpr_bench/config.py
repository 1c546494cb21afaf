"""Typed configuration, one dataclass per concern, filled from a preset and then CLI overrides.

The whole resolved ``RunConfig`` is written to each run's ``config.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vpr_bench.errors import ConfigError


@dataclass
class DataConfig:
    dataset: str = "synthetic"
    data_root: str | None = None
    struct_dir: str | None = None
    layout: str = "auto"
    image_size: tuple[int, int] = (224, 224)  # (H, W) fed to the network
    pos_radius: float | None = None  # None → the dataset's own (25 m for NetVLAD .mat files)
    train_pos_radius: float | None = None
    drop_queries_without_positives: bool = False  # True reproduces the STUN/TSCM release


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
    index: str = "flat"


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    preset: str = "demo"
    seed: int = 1234
    out: str = "results"
    quiet: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        checks = [
            (self.eval.batch_size >= 1, "--batch-size must be ≥ 1"),
            (self.eval.num_workers >= 0, "--num-workers must be ≥ 0"),
            (
                all(n >= 1 for n in self.eval.recall_at) and self.eval.recall_at,
                "--recall-at needs values ≥ 1",
            ),
            (all(s >= 8 for s in self.data.image_size), "--image-size must be at least 8×8"),
            (self.data.pos_radius is None or self.data.pos_radius > 0, "--pos-radius must be > 0"),
            (
                self.eval.device in ("auto", "cpu", "cuda") or self.eval.device.startswith("cuda:"),
                "--device must be auto, cpu, cuda or cuda:N",
            ),
            (self.eval.index == "flat", "--index: only 'flat' is available"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


PRESETS: dict[str, dict[str, Any]] = {
    # small backbone and images: the whole run finishes in minutes on 2 CPU cores
    "demo": {"data.image_size": (96, 128), "model.backbone": "resnet18", "eval.batch_size": 32},
    # the paper's setting: 224×224, ResNet-50 cut after layer3 (stride 16)
    "paper": {
        "data.image_size": (224, 224),
        "model.backbone": "resnet50",
        "model.backbone_stage": 3,
        "eval.batch_size": 32,
    },
}


def apply(cfg: RunConfig, values: dict[str, Any]) -> RunConfig:
    """Set dotted ``section.field`` values (None means "not given": keep what is there)."""
    for key, value in values.items():
        if value is None:
            continue
        target = cfg
        *path, name = key.split(".")
        for part in path:
            target = getattr(target, part)
        if not hasattr(target, name):
            raise ConfigError(f"unknown setting {key!r}")
        setattr(target, name, value)
    return cfg


def resolve(preset: str, overrides: dict[str, Any]) -> RunConfig:
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r} is not one of {', '.join(PRESETS)}")
    cfg = apply(RunConfig(preset=preset), PRESETS[preset])
    apply(cfg, overrides)
    cfg.validate()
    return cfg
