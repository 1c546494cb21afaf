"""The presets: named sets of values applied under the flags (``--preset demo|paper``). A method's own
values for a preset (its model sizes, say) are registered with the method (``MethodSpec.presets``) and
applied over these."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # Small backbone and images, trained from scratch (no weights can be downloaded on a fresh CPU
    # machine; ``pretrained`` is off explicitly, so that a networked machine computes the same figures):
    # a higher learning rate without weight decay, fewer negatives, 200 queries an epoch. The whole
    # `make run` finishes in minutes on 2 CPU cores.
    "demo": {
        "data.image_size": (48, 64),
        "model.backbone": "resnet18",
        "model.backbone_stage": 3,
        "model.pretrained": False,
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
