"""What a trained run's record says about its training: the budget it was given (``compare`` checks it
before it sets two runs side by side) and how training went."""

from __future__ import annotations

import time

import torch

from vpr_bench.config import RunConfig
from vpr_bench.devices import device_name
from vpr_bench.methods.backbones import pretrained_backbones
from vpr_bench.methods.parts import trainable_parts
from vpr_bench.training.places import budget_of_batches


def training_budget(cfg: RunConfig, progress, device: torch.device, model=None) -> dict:
    """What a trained run was given: the fields ``compare`` checks before it puts two runs side by side.
    ``pretrained``: per backbone, whether it started from pretrained weights (``pretrained_backbones``);
    ``device``: the card's or the CPU's name. The batches' fields are the recipe's (``budget_of_batches``):
    tuples and negatives, or places × images per place."""
    seen = sum(int(h.get("tuples", 0)) for h in progress.history)  # tuples, or places (place batches)
    return {
        "recipe": cfg.recipe.name,
        "train_dataset": cfg.recipe.train_dataset or cfg.data.dataset,
        "epochs": progress.epoch,
        "max_epochs": cfg.train.epochs,
        **budget_of_batches(cfg, seen),
        "loss": cfg.train.loss,
        "optimizer": cfg.train.optimizer,
        "lr": cfg.train.lr,
        "weight_decay": cfg.train.weight_decay,
        "precision": cfg.train.precision,
        "image_size": "native" if tuple(cfg.data.image_size) == (0, 0) else list(cfg.data.image_size),
        "wall_s": round(sum(float(h.get("seconds", 0)) for h in progress.history), 1),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "seed": cfg.seed,
        "preset": cfg.preset,
        "pretrained": pretrained_backbones(
            getattr(model, "backbone_facts", None) or {}, cfg.model.backbone, cfg.model.pretrained
        ),
    }


def training_section(trainer, progress, started: float) -> dict:
    """The record's ``training``: how training went, and where this session's time went."""
    return {
        "epochs": progress.epoch,
        "best_epoch": progress.best_epoch,
        "best_val_R@1": progress.best_recall,
        # what trained and what stayed frozen, as the model was built (``vpr_bench.methods.parts``)
        "parts": trainable_parts(trainer.model),
        "stopped_early": progress.stopped_early,
        "steps": progress.global_step,
        "seconds_this_session": time.perf_counter() - started,
        # wall seconds per phase of this session: cache refresh, mining, optimisation, …
        "time_split_s": {k: round(v, 2) for k, v in trainer.time_split.items()},
        "history": progress.history,
    }
