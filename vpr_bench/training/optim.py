"""The optimiser and learning-rate schedule of a training run (the release's: Adam, ExponentialLR per
epoch)."""

from __future__ import annotations

import torch
from torch import nn

from vpr_bench.config import TrainConfig


def build_optimizer(
    model: nn.Module, tc: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam (or SGD with momentum 0.9) over the trainable parameters, and ExponentialLR(γ)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if tc.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=tc.lr, momentum=0.9, weight_decay=tc.weight_decay)
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=tc.lr_gamma)
