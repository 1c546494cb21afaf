"""The run configuration: one typed dataclass per concern. Each field declares its default, help, CLI
flag, allowed values and bounds once (``vpr_bench.settings.setting``); the CLI options, the checks of a
resolved configuration and the reading of ``--config`` files are generated from these declarations.

The whole resolved ``RunConfig`` is written to each run's ``config.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vpr_bench.config.presets import PRESETS
from vpr_bench.config.recipe import OPTIMIZERS, PRECISIONS, RecipeConfig, check_recipe
from vpr_bench.config.values import (  # noqa: F401  (parse_names: read from here too)
    NATIVE,
    check_device,
    check_image_size,
    check_metrics,
    check_recall_at,
    parse_image_size,
    parse_ints,
    parse_names,
)
from vpr_bench.errors import ConfigError
from vpr_bench.registry import DISTANCES, KD_LOSSES, LOSSES, REDUCTIONS, registry_names
from vpr_bench.settings import EVALUATE, NONE, TRAIN, check, setting

# How an image becomes the network's input (implemented in ``vpr_bench.datasets.images``):
# "resize-first": resize the PIL image (antialiased), then ToTensor and normalise — NetVLAD, MixVPR,
#   Conv-AP, SALAD; "tensor-resize-first": ToTensor, resize the tensor with antialiasing, then normalise —
#   Bag-of-Queries; "normalize-first": the TSCM release's — normalise the full-size tensor, then resize it
#   without antialiasing.
PREPROCESSING = ("resize-first", "tensor-resize-first", "normalize-first")
INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass
class DataConfig:
    dataset: str = setting(
        "synthetic", "Dataset name, or folder:<path> (see `vpr-bench list`).", commands=EVALUATE
    )
    data_root: str | None = setting(None, "Dataset root [default: datasets/<name>].", commands=EVALUATE)
    struct_dir: str | None = setting(None, "Extra folder holding .mat structure files.", commands=EVALUATE)
    layout: str = setting(
        "auto", "Image layout of .mat datasets.", commands=EVALUATE, choices=("auto", "netvlad", "tscm")
    )
    image_size: tuple[int, int] = setting(
        (224, 224),
        "HxW, or native (each image's own size) [default: the method's, else the preset's].",
        commands=EVALUATE,
        cli_parser=parse_image_size,
        check=check_image_size,
    )
    preprocess: str = setting(
        "resize-first",
        "resize-first: resize the image (antialiased), then normalise; tensor-resize-first: resize the "
        "tensor (antialiased), then normalise (Bag-of-Queries); normalize-first: the TSCM release's order "
        "(normalise, then resize without antialiasing) [default: the method's, else resize-first].",
        commands=EVALUATE,
        choices=PREPROCESSING,
    )
    interpolation: str = setting(
        "bilinear",
        "Resize interpolation [default: the method's, else bilinear].",
        commands=EVALUATE,
        choices=INTERPOLATIONS,
    )
    image_cache: str = setting(
        "auto",
        "Keep decoded, resized images in this folder and read them back in later passes and runs; auto: "
        "$VPR_BENCH_IMAGE_CACHE, else ~/.cache/vpr-bench/images (too little space: one warning, no "
        "caching); off: decode every time [default: auto].",
        commands=EVALUATE,
        metavar="DIR|auto|off",
    )
    pos_radius: float | None = setting(
        None, "Positive radius in metres [default: the dataset's, 25].", commands=EVALUATE, above=0
    )
    train_pos_radius: float | None = setting(
        None,
        "Non-trivial training positives within this many metres [default: the dataset's, 10].",
        commands=TRAIN,
        above=0,
    )
    drop_queries_without_positives: bool = setting(
        False, "Leave such queries out (the STUN/TSCM release's protocol).", commands=EVALUATE
    )
    cities: str | None = setting(
        None,
        "MSLS: comma-separated cities, in order [default: the split's, val = cph,sf].",
        commands=EVALUATE,
    )


@dataclass
class ModelConfig:
    method: str = setting("gem", "Method name (see `vpr-bench list`).", commands=EVALUATE)
    backbone: str = setting("resnet50", "timm model name [default: from the preset].", commands=EVALUATE)
    backbone_stage: int | None = setting(
        None,
        "Cut the backbone after this timm feature stage [default: the last].",
        commands=EVALUATE,
        minimum=0,
    )
    pretrained: bool = setting(
        True, "Use ImageNet weights [default: the preset's].", commands=EVALUATE, negatable=True
    )
    pretrained_file: str | None = setting(None, "Local weights file for the backbone.", commands=EVALUATE)
    descriptor_dim: int | None = setting(
        None, "Project descriptors to this size (gem: FC).", commands=EVALUATE, minimum=1
    )
    options: dict[str, Any] = setting(
        {},
        "Method-specific setting KEY=VALUE (repeatable), e.g. clusters=32 (netvlad); "
        "`vpr-bench list --method NAME` lists them.",
        commands=EVALUATE,
        flag="--model-option",
        metavar="KEY=VALUE",
        multiple=True,
    )


@dataclass
class EvalConfig:
    split: str = setting(
        "test", "The split to evaluate.", commands=frozenset({"eval"}), choices=("test", "val", "train")
    )
    batch_size: int = setting(
        32,
        "Images per batch for descriptor extraction.",
        commands=EVALUATE,
        flag="--eval-batch-size",
        minimum=1,
    )
    num_workers: int = setting(2, "DataLoader workers [default: 2].", commands=EVALUATE, minimum=0)
    recall_at: tuple[int, ...] = setting(
        (1, 5, 10, 20),
        "N values [default: 1,5,10,20].",
        commands=EVALUATE,
        cli_parser=parse_ints,
        minimum=1,
        check=check_recall_at,
    )
    device: str = setting(
        "auto", "auto, cpu, cuda or cuda:N [default: auto].", commands=EVALUATE, check=check_device
    )
    index: str = setting(
        "flat",
        "Search: flat (exact), flat-fp16 (exact over the database stored as float16: half the memory, "
        "distances of the rounded database) or ivfpq (approximate faiss index) [default: flat].",
        commands=EVALUATE,
        choices=("flat", "flat-fp16", "ivfpq"),
    )
    nlist: int = setting(1024, "ivfpq: inverted-file cells [default: 1024].", commands=EVALUATE, minimum=1)
    m: int = setting(64, "ivfpq: product-quantiser sub-vectors [default: 64].", commands=EVALUATE, minimum=1)
    nprobe: int = setting(16, "ivfpq: cells visited per query [default: 16].", commands=EVALUATE, minimum=1)
    descriptor_dtype: str = setting(
        "float32",
        "Database descriptors on disk and in a flat index (float16: searched as flat-fp16) "
        "[default: float32; float16 with --index flat-fp16].",
        commands=EVALUATE,
        choices=("float32", "float16"),
    )
    metrics: tuple[str, ...] = setting(
        ("recall", "mrr"),
        "Metrics to compute, comma-separated, or all (see `vpr-bench list`); Recall@N always "
        "[default: recall,mrr].",
        commands=EVALUATE,
        cli_parser=parse_names,
        metavar="NAME,NAME|all",
        check=check_metrics,
    )
    soft_radius: float | None = setting(
        None,
        "Soft positives within this radius (metres, or frames), ≥ the positive radius: a top-1 match "
        "there is not counted false by the precision-recall metrics [default: the protocol's, none].",
        commands=EVALUATE,
        above=0,
    )
    save_descriptors: bool = setting(
        False,
        "Keep the database and query descriptors in the run folder (descriptors/), for `eval --descriptors`.",
        commands=frozenset({"run", "eval"}),
    )
    saved_descriptor_dtype: str = setting(
        "float16",
        "Precision of the descriptors --save-descriptors keeps [default: float16].",
        commands=frozenset({"run", "eval"}),
        choices=("float16", "float32"),
    )
    descriptors: str | None = setting(
        None,
        "Evaluate the descriptors a run kept (--save-descriptors) instead of running the model; the split "
        "must be the one they describe.",
        commands=frozenset({"eval"}),
        metavar="RUN",
    )
    no_labels: bool = setting(
        False,
        "The split has no ground truth (MSLS's test cities, a folder of your own): write the ranked "
        "predictions (and MSLS's challenge submission file), no metrics.",
        commands=frozenset({"eval"}),
    )


@dataclass
class TrainConfig:
    """Triplet training with partial hard-negative mining; defaults are the paper's (release) values."""

    epochs: int = setting(200, "Maximum epochs [paper: 200].", commands=TRAIN, minimum=1)
    optimizer: str = setting("adam", "Optimiser [default: adam].", commands=TRAIN, choices=OPTIMIZERS)
    lr: float = setting(1e-5, "Learning rate [paper: 1e-5].", commands=TRAIN, above=0)
    weight_decay: float = setting(1e-3, "Weight decay [paper: 1e-3].", commands=TRAIN, minimum=0)
    lr_gamma: float = setting(0.99, "LR factor an epoch or milestone [paper: 0.99].", commands=TRAIN, above=0)
    precision: str = setting(
        "fp32", "Training arithmetic: fp32, or autocast in bf16 or fp16 (CUDA; with a gradient scaler) "
        "[default: fp32; gsv: fp16].", commands=TRAIN, choices=PRECISIONS,
    )  # fmt: skip
    batch_size: int = setting(
        8,
        "Training tuples (1 query, 1 positive, N negatives) per batch [paper: 8].",
        commands=TRAIN,
        minimum=1,
    )
    negatives: int = setting(10, "Hard negatives per tuple [paper: 10].", commands=TRAIN, minimum=1)
    negative_samples: int = setting(1000, "Random negatives drawn per query [paper: 1000].", commands=TRAIN)
    margin: float = setting(0.1, "Triplet margin [paper: 0.1].", commands=TRAIN, above=0)
    mining_margin: float | None = setting(
        None,
        "A negative is hard when d(q, n) < d(q, p) + this [default: √margin, as NetVLAD].",
        commands=TRAIN,
        above=0,
    )
    loss: str = setting(
        "triplet",
        "Training loss (see `vpr-bench list`) [default: triplet].",
        commands=TRAIN,
        choices=lambda: registry_names(LOSSES),
    )
    distance: str = setting(
        "l2",
        "Distance of the triplet loss [default: l2].",
        commands=TRAIN,
        choices=lambda: registry_names(DISTANCES),
    )
    reduction: str = setting(
        "mean",
        "How the triplet losses of a batch are reduced [default: mean].",
        commands=TRAIN,
        choices=lambda: registry_names(REDUCTIONS),
    )
    cache_refresh: int = setting(
        0, "Batches between descriptor-cache refreshes; 0 = once per epoch.", commands=TRAIN, minimum=0
    )
    patience: int = setting(
        10, "Epochs without val R@1 gain before stopping [paper: 10].", commands=TRAIN, minimum=1
    )
    checkpoint_every_min: float = setting(
        10.0,
        "Minutes between writes of the resumable state (last.pt) inside an epoch, in the background; it is "
        "also written after each mining round, at each epoch's end and on Ctrl-C or SIGTERM; 0 = off "
        "[default: 10].",
        commands=TRAIN,
        minimum=0,
    )
    checkpoint_every: int = setting(
        0, "Also write it every N batches; 0 = off [default: 0].", commands=TRAIN, minimum=0
    )
    queries_per_epoch: int = setting(0, "Training queries per epoch; 0 = all.", commands=TRAIN, minimum=0)
    tensorboard: bool = setting(
        False,
        "Also log the training curves (training.csv) for TensorBoard, in the run folder.",
        commands=TRAIN,
    )
    log_dir: str | None = setting(
        None,
        "TensorBoard event files under DIR/<dataset>/<method>/<run-id> (implies --tensorboard).",
        commands=TRAIN,
        metavar="DIR",
    )


@dataclass
class DistillConfig:
    """Knowledge distillation, for methods that train a student from a frozen teacher (e.g. ``tscm``)."""

    teacher: str | None = setting(
        None,
        "Distillation: a teacher run folder or weights file [default: the pipeline trains one].",
        commands=EVALUATE,
    )
    kd_loss: str | None = setting(
        None,
        "Distillation loss (see `vpr-bench list`) [default: the method's, tscm: cross-metric].",
        commands=frozenset({"run"}),
        choices=lambda: registry_names(KD_LOSSES),
    )
    kd_weight: float = setting(
        1.0, "Distillation: weight of the KD term [default: 1].", commands=TRAIN, minimum=0
    )
    mining_space: str = setting(
        "teacher",
        "Distillation: mine the student's tuples in this model's space [default: teacher].",
        commands=TRAIN,
        choices=("teacher", "student"),
    )


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    preset: str = setting(
        "demo",
        "Preset values under the flags [default: demo, or a --config file's].",
        commands=EVALUATE,
        choices=tuple(PRESETS),
    )
    seed: int = setting(1234, "Random seed [default: 1234].", commands=EVALUATE)
    out: str = setting("results", "Results folder [default: results].", commands=EVALUATE)
    quiet: bool = setting(False, "No progress bars.", commands=EVALUATE)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """The inverse of ``to_dict`` (e.g. from a run's config.json); unknown keys are ignored."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            value = values[f.name]
            if f.name in SECTIONS:
                known = {g.name for g in dataclasses.fields(SECTIONS[f.name])}
                value = SECTIONS[f.name](**{k: v for k, v in value.items() if k in known})
            kwargs[f.name] = value
        cfg = cls(**kwargs)
        cfg.data.image_size = tuple(cfg.data.image_size)
        cfg.eval.recall_at = tuple(cfg.eval.recall_at)
        cfg.eval.metrics = tuple(cfg.eval.metrics)
        return cfg

    def validate(self) -> None:
        """Every field against its declaration, then the checks that relate two fields."""
        for section in (self.data, self.model, self.eval, self.train, self.distill, self.recipe, self):
            check(section)
        check_recipe(self)
        if self.train.negative_samples < self.train.negatives:
            raise ConfigError("--negative-samples must be ≥ --negatives")


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "eval": EvalConfig,
    "train": TrainConfig,
    "distill": DistillConfig,
    "recipe": RecipeConfig,
}
__all__ = [
    "DataConfig",
    "DistillConfig",
    "RecipeConfig",
    "EvalConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "SECTIONS",
    "NONE",
    "PREPROCESSING",
    "INTERPOLATIONS",
    "NATIVE",
    "parse_image_size",
    "parse_ints",
]


def check_setting(key: str, value: Any) -> None:
    """``value`` checked against the declaration of the dotted setting ``key`` (e.g. each name of
    ``ablate --kd-loss a,b``), else a ConfigError naming it."""
    from vpr_bench.settings import violation

    section, _, name = key.rpartition(".")
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[section] if section else RunConfig)}
    problem = violation(fields[name], value)
    if problem:
        raise ConfigError(problem)
