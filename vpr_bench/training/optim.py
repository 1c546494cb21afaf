"""The optimiser and learning-rate schedule of a training run: the release's (Adam, ExponentialLR per
epoch), or a recipe's (SGD or AdamW, MultiStepLR per epoch, a linear warm-up over the first steps)."""

from __future__ import annotations

import torch
from torch import nn

from vpr_bench.config import TrainConfig
from vpr_bench.config.recipe import RecipeConfig


def build_optimizer(
    model: nn.Module, tc: TrainConfig, recipe: RecipeConfig | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam, AdamW or SGD with momentum 0.9 (MixVPR main.py's, 4043915) over the trainable parameters;
    ExponentialLR(γ), or MultiStepLR(milestones, γ) with ``recipe.scheduler`` multistep — both stepped
    once an epoch."""
    params = [p for p in model.parameters() if p.requires_grad]
    if tc.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    elif tc.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=tc.lr, momentum=0.9, weight_decay=tc.weight_decay)
    if recipe is not None and recipe.scheduler == "multistep":
        milestones = list(recipe.milestones)
        return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=tc.lr_gamma)
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=tc.lr_gamma)


def warm_up(optimizer: torch.optim.Optimizer, base_lrs: list[float], step: int, steps: int) -> None:
    """Before optimiser step ``step`` (0-based) of the first ``steps``: each group's lr = its base lr ×
    (step + 1) / steps (MixVPR main.py ``optimizer_step``; BoQ 1a4965e src/model.py, with ``steps`` =
    warm-up epochs × batches an epoch). After it, the lr is the scheduler's, which steps per epoch from
    the last value set (torch's schedulers are chainable), as under Lightning."""
    if step >= steps:
        return
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        group["lr"] = base * (step + 1) / steps
