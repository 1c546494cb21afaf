"""How a model is trained: the recipe (``--recipe``) and the settings only some recipes use.

``triplet`` is the harness's own engine: hard-negative mining on a Pittsburgh-style training split,
(query, positive, negatives) tuples and the triplet loss (``TrainConfig``). ``gsv`` and ``gsv-boq`` are
the recipe most models published since 2022 train with (MixVPR, Conv-AP, BoQ, SALAD, CricaVPR): batches
of P places × K images (GSV-Cities, or a Pittsburgh-style split grouped into places), a
pytorch-metric-learning loss with its miner (Multi-Similarity), warm-up and a step schedule, RandAugment,
mixed precision.

A recipe is a set of values per preset (``RECIPES``), applied over the preset and under the method's own
preset values, a ``--config`` file and the flags (``config.resolve``). Under ``paper`` they are the
authors' own, each with its source; under ``demo`` a recipe changes only the batches and the loss, so
that a demo run of either recipe has one budget (epochs, images seen, image size, optimiser).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vpr_bench.config.values import check_image_size, parse_image_size, parse_ints
from vpr_bench.errors import ConfigError
from vpr_bench.settings import TRAIN, setting

PLACE_RECIPES = ("gsv", "gsv-boq")  # the recipes that train on place batches
MINERS = ("multi-similarity", "none")
OPTIMIZERS = ("adam", "sgd", "adamw")  # TrainConfig.optimizer (training.optim)
PRECISIONS = ("fp32", "bf16", "fp16")  # TrainConfig.precision (training.precision)

# The MixVPR recipe, amaralibey/MixVPR 4043915cef24818003ece1a8112bc8a24e69abe0, main.py (__main__):
# GSVCitiesDataModule(batch_size=120, img_per_place=4, min_img_per_place=4, image_size=(320, 320)),
# VPRModel(lr=0.05, optimizer='sgd', weight_decay=0.001, momentum=0.9, warmpup_steps=650,
# milestones=[5, 10, 15, 25, 45], lr_mult=0.3, loss_name='MultiSimilarityLoss',
# miner_name='MultiSimilarityMiner', miner_margin=0.1), pl.Trainer(precision=16, max_epochs=80) with no
# early stopping (the best of 80 epochs on pitts30k_val R@1 is kept); dataloaders/GSVCitiesDataloader.py:
# train transform Resize(bilinear) → RandAugment(num_ops=3) (magnitude: torchvision's default, 9).
MIXVPR = {
    "train.optimizer": "sgd",  # momentum 0.9: training.optim
    "train.lr": 0.05,
    "train.weight_decay": 0.001,
    "train.lr_gamma": 0.3,
    "train.epochs": 80,
    "train.patience": 80,
    "train.precision": "fp16",
    "recipe.places_per_batch": 120,
    "recipe.scheduler": "multistep",
    "recipe.milestones": (5, 10, 15, 25, 45),
    "recipe.warmup_steps": 650,
    "recipe.augment": "randaugment",
    "recipe.augment_magnitude": 9,
    "data.image_size": (320, 320),
    "data.interpolation": "bilinear",
}
# The Bag-of-Queries recipe, amaralibey/Bag-of-Queries 1a4965ea7dfd9bd0dd846adf7a0e430f68101d12, train.py
# HyperParams (its default backbone dinov2_vitb14): batch_size=128 places, img_per_place=4, max_epochs=40,
# warmup_epochs=10, lr=1e-4, weight_decay=1e-4, lr_mul=0.1, milestones=[10, 20]; train 224×224, val
# 322×322 (ResNet backbones: 320 and 384); Trainer(precision="16-mixed"); src/model.py: AdamW,
# MultiStepLR, MultiSimilarityLoss(alpha=1, beta=50, base=0), MultiSimilarityMiner(epsilon=0.1);
# src/dataloaders/datamodule.py: Resize(interpolation=3, bicubic) → RandAugment(num_ops=3, magnitude=15).
BOQ = {
    "train.optimizer": "adamw",
    "train.lr": 1e-4,
    "train.weight_decay": 1e-4,
    "train.lr_gamma": 0.1,
    "train.epochs": 40,
    "train.patience": 40,
    "train.precision": "fp16",
    "recipe.places_per_batch": 128,
    "recipe.scheduler": "multistep",
    "recipe.milestones": (10, 20),
    "recipe.warmup_epochs": 10,
    "recipe.augment": "randaugment",
    "recipe.augment_magnitude": 15,
    "recipe.train_image_size": (224, 224),
    "data.image_size": (322, 322),
    "data.interpolation": "bicubic",
}
# What every place recipe trains with: MixVPR utils/losses.py and BoQ src/model.py (commits above).
PLACE_BATCHES = {
    "train.loss": "multi-similarity",
    "recipe.miner": "multi-similarity",
    "recipe.images_per_place": 4,
}
# The demo's place batches: 10 places × 4 images = 40 images a step, as the demo's 8 tuples of
# (query, positive, 3 negatives); 250 places an epoch = 1000 images, as its 200 queries × 5 images.
DEMO = {**PLACE_BATCHES, "recipe.places_per_batch": 10, "recipe.places_per_epoch": 250}
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "triplet": {},
    "gsv": {"paper": {**PLACE_BATCHES, **MIXVPR}, "demo": DEMO},
    "gsv-boq": {"paper": {**PLACE_BATCHES, **BOQ}, "demo": DEMO},
}


def recipe_values(name: str, preset: str) -> dict[str, Any]:
    """The values recipe ``name`` sets under ``preset`` (none for an unknown name: the field's check names
    the valid ones)."""
    return dict(RECIPES.get(name, {}).get(preset, {}))


def place_batches(cfg) -> bool:
    """Whether a run configuration trains on place batches (P places × K images)."""
    return cfg.recipe.name in PLACE_RECIPES


@dataclass
class RecipeConfig:
    """The recipe and its settings; ``TrainConfig`` holds those every recipe shares."""

    name: str = setting(
        "triplet",
        "How to train: triplet (mined tuples, triplet loss), gsv (GSV-Cities' place batches, "
        "Multi-Similarity loss: MixVPR's recipe) or gsv-boq (Bag-of-Queries' values) [default: triplet].",
        commands=TRAIN,
        flag="--recipe",
        choices=tuple(RECIPES),
    )
    train_dataset: str | None = setting(
        None,
        "Train on this dataset (e.g. gsv-cities) and validate and test on --dataset [default: --dataset's "
        "train split].",
        commands=TRAIN,
    )
    train_data_root: str | None = setting(
        None, "Root of --train-dataset [default: datasets/<name>].", commands=TRAIN
    )
    train_cities: str | None = setting(
        None,
        "GSV-Cities: comma-separated cities, or all [default: the 23 of the official loader].",
        commands=TRAIN,
    )
    places_per_batch: int = setting(
        120, "Place batches: places per batch, P [gsv: 120].", commands=TRAIN, minimum=2
    )
    images_per_place: int = setting(
        4,
        "Place batches: images per place, K; places with fewer are left out [gsv: 4].",
        commands=TRAIN,
        minimum=2,
    )
    places_per_epoch: int = setting(
        0, "Place batches: places an epoch (more than there are: several passes); 0 = all.", commands=TRAIN,
        minimum=0,
    )  # fmt: skip
    miner: str = setting(
        "multi-similarity",
        "Place batches: the pytorch-metric-learning miner, or none (every pair) [default: multi-similarity].",
        commands=TRAIN,
        choices=MINERS,
    )
    scheduler: str = setting(
        "exponential",
        "Learning-rate schedule per epoch: exponential (× --lr-gamma every epoch) or multistep (× "
        "--lr-gamma at each of --milestones) [default: exponential].",
        commands=TRAIN,
        choices=("exponential", "multistep"),
    )
    milestones: tuple[int, ...] = setting(
        (5, 10, 15), "multistep: the epochs after which the lr is multiplied by --lr-gamma.", commands=TRAIN,
        cli_parser=parse_ints, minimum=1,
    )  # fmt: skip
    warmup_steps: int = setting(
        0,
        "Linear learning-rate warm-up over this many steps; 0 = none [gsv: 650].",
        commands=TRAIN,
        minimum=0,
    )
    warmup_epochs: int = setting(
        0, "Place batches: warm-up over this many epochs' steps [gsv-boq: 10].", commands=TRAIN, minimum=0
    )
    augment: str = setting(
        "none",
        "Training-image augmentation: none or randaugment (3 ops) [gsv: randaugment].",
        commands=TRAIN,
        choices=("none", "randaugment"),
    )
    augment_magnitude: int = setting(
        9, "RandAugment's magnitude (0–30) [gsv: 9, gsv-boq: 15].", commands=TRAIN, minimum=0, maximum=30
    )
    train_image_size: tuple[int, int] | None = setting(
        None,
        "HxW of the training images [default: --image-size; gsv-boq: 224x224 (DINOv2)].",
        commands=TRAIN,
        cli_parser=parse_image_size,
        check=lambda size: check_image_size(size) if size is not None else None,
    )

    def __post_init__(self) -> None:  # read back from a run's config.json, the tuples are lists
        self.milestones = tuple(self.milestones)
        if self.train_image_size is not None:
            self.train_image_size = tuple(self.train_image_size)


def check_recipe(cfg) -> None:
    """The checks that relate the recipe to other settings of a resolved configuration."""
    r = cfg.recipe
    if r.warmup_steps and r.warmup_epochs:
        raise ConfigError("--warmup-steps and --warmup-epochs: give one of them")
    if not place_batches(cfg) and r.warmup_epochs:
        raise ConfigError(
            "--warmup-epochs needs place batches (--recipe gsv), whose epochs have a fixed number of steps; "
            "give --warmup-steps"
        )
    if not place_batches(cfg) and r.train_cities:
        raise ConfigError("--train-cities selects GSV-Cities' cities: it needs --recipe gsv")
    if not place_batches(cfg) and (r.augment != "none" or r.train_image_size):
        raise ConfigError("--augment and --train-image-size apply to place batches: add --recipe gsv")
    if list(r.milestones) != sorted(set(r.milestones)):
        raise ConfigError(f"--milestones {','.join(map(str, r.milestones))}: give increasing epochs")
