"""``salad``: DINOv2 SALAD (S. Izquierdo, J. Civera, "Optimal Transport Aggregation for Visual Place
Recognition", CVPR 2024), as its official code runs it at evaluation (serizba/salad, commit e593005,
``hubconf.dinov2_salad``; the DINOv2 backbone as facebookresearch/dinov2 b8931f7 runs it).

Network: DINOv2 ViT-B/14 with its final norm → class token t (B, 768) and patch features f (B, 768, h, w).
- global token: ``token_features`` MLP 768 → 512 → ReLU → 256 on t;
- local features: 1×1 convs ``cluster_features`` 768 → 512 → ReLU → 128 and ``score`` 768 → 512 → ReLU → 64
  on f (dropout between, identity at evaluation), over the n = h·w patches;
- assignment (the paper's Sec. 3.2): the scores S (B, m=64, n) plus a dust-bin row of the learnt score
  ``dust_bin``; 3 log-domain Sinkhorn iterations (regularisation 1) towards row masses 1/(n+m) (the dust
  bin's (n−m)/(n+m)) and column masses 1/(n+m); log P = S + u + v + log(n+m); the dust-bin row dropped;
- aggregation: V (B, 128, 64) = Σ_patches local features × P, L2-normalised per cluster, flattened
  channel-major (index c·64 + k);
- descriptor: L2(concat(L2(global token), V)), 256 + 64·128 = 8448-d.

The official files (``dino_salad.ckpt``: flat state dicts of ``VPRModel``) keep the aggregator's names,
which are ours; their ``backbone.model.*`` is timm's DINOv2 under ``backbone.vit.`` (``mask_token``
dropped). The file decides the backbone width and the cluster, cluster-dimension and token sizes.
Verified against the official code's outputs (tests/data/salad, see its README).

Training (serizba/salad e5930053 ``main.py``: ``num_trainable_blocks=4``, ``norm_layer=True``, 224×224;
``models/backbones/dinov2.py`` runs the earlier blocks under ``no_grad`` and detaches): from ``--backbone``
alone (``zoo.models._trunks``), when the ViT starts from pretrained weights its patch embedding, tokens and
all blocks but the last 4 are frozen; those 4, the final norm and the aggregator train. The MLPs take the
ViT's width; any timm ViT with a class token works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vpr_bench.api import ConfigError, ModelConfig, TrainedParts, option
from zoo.models._dinov2 import TIMM_NAMES, official_dinov2_state
from zoo.models._trunks import chosen_backbone, freeze_vit, vit_trunk
from zoo.published import (
    MSLS_CHALLENGE,
    MSLS_VAL,
    NORDLAND_1,
    PITTS30K,
    OfficialFile,
    Published,
    register_published,
    reported,
)

SINKHORN_ITERATIONS = 3


@dataclass(frozen=True)
class SALADOptions:
    backbone: str = option(
        "dinov2_vitb14", f"DINOv2 backbone: {', '.join(TIMM_NAMES)} (a file decides it; else --backbone)"
    )
    clusters: int = option(64, "clusters m of the optimal-transport assignment")
    cluster_dim: int = option(128, "channels of each cluster's aggregated feature")
    token_dim: int = option(256, "size of the global (class-token) feature")
    hidden: int = option(512, "hidden width of the three MLPs")
    num_trainable_blocks: int = option(
        4,
        "training: the ViT's last N blocks (and its final norm) train when it starts from pretrained "
        "weights, the rest stays frozen",
        minimum=0,
    )

    def __post_init__(self) -> None:
        if self.backbone not in TIMM_NAMES:
            raise ValueError(f"backbone {self.backbone!r} is not one of {', '.join(TIMM_NAMES)}")


def log_optimal_transport(scores: torch.Tensor, dust_bin: torch.Tensor, iterations: int) -> torch.Tensor:
    """(B, m, n) scores → (B, m + 1, n) log transport plan, the last row the dust bin's."""
    batch, clusters, patches = scores.shape
    if patches <= clusters:  # the dust bin's mass (n - m) / (n + m) must be positive
        raise ConfigError(
            f"SALAD needs more patches than its {clusters} clusters, got {patches}: raise --image-size"
        )
    dust_row = dust_bin.expand(batch, 1, patches)
    log_kernel = torch.cat([scores, dust_row], dim=1)  # (B, m + 1, n), regularisation 1
    log_total = math.log(patches + clusters)
    log_row_mass = torch.full((clusters + 1,), -log_total, dtype=scores.dtype, device=scores.device)
    log_row_mass[-1] = log_row_mass[-1] + math.log(patches - clusters)
    log_col_mass = torch.full((patches,), -log_total, dtype=scores.dtype, device=scores.device)
    log_row_mass, log_col_mass = log_row_mass.expand(batch, -1), log_col_mass.expand(batch, -1)
    u, v = torch.zeros_like(log_row_mass), torch.zeros_like(log_col_mass)
    for _ in range(iterations):
        u = log_row_mass - torch.logsumexp(log_kernel + v.unsqueeze(1), dim=2)
        v = log_col_mass - torch.logsumexp(log_kernel + u.unsqueeze(2), dim=1)
    return log_kernel + u.unsqueeze(2) + v.unsqueeze(1) + log_total


def _pointwise_mlp(channels: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1), nn.Dropout(dropout), nn.ReLU(), nn.Conv2d(hidden, out, 1)
    )


class SALAD(nn.Module):
    """(feature map (B, C, h, w), class token (B, C)) → (B, token_dim + clusters·cluster_dim) descriptor."""

    def __init__(self, channels: int, clusters: int, cluster_dim: int, token_dim: int, hidden: int):
        super().__init__()
        self.token_features = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, token_dim)
        )
        self.cluster_features = _pointwise_mlp(channels, hidden, cluster_dim, dropout=0.3)
        self.score = _pointwise_mlp(channels, hidden, clusters, dropout=0.3)
        self.dust_bin = nn.Parameter(torch.tensor(1.0))

    def log_transport(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) → (B, m + 1, h·w) log transport plan of the patches to the clusters and dust bin."""
        return log_optimal_transport(self.score(features).flatten(2), self.dust_bin, SINKHORN_ITERATIONS)

    def cluster_sums(self, features: torch.Tensor, log_plan: torch.Tensor) -> torch.Tensor:
        """(B, cluster_dim, m): each cluster's local features summed with their transport mass."""
        local = self.cluster_features(features).flatten(2)  # (B, cluster_dim, n)
        return torch.einsum("bcn,bmn->bcm", local, log_plan[:, :-1].exp())

    def forward(self, features: torch.Tensor, class_token: torch.Tensor) -> torch.Tensor:
        clusters = self.cluster_sums(features, self.log_transport(features))
        clusters = F.normalize(clusters, dim=1).flatten(1)  # index c·m + k
        token = F.normalize(self.token_features(class_token), dim=-1)
        return F.normalize(torch.cat([token, clusters], dim=-1), dim=-1)


class SALADNet(nn.Module):
    def __init__(self, backbone: nn.Module, aggregator: SALAD, facts: dict):
        super().__init__()
        self.backbone = backbone
        self.aggregator = aggregator
        token_dim = aggregator.token_features[-1].out_features
        clusters, cluster_dim = (
            aggregator.score[-1].out_channels,
            aggregator.cluster_features[-1].out_channels,
        )
        self.descriptor_dim: int = token_dim + clusters * cluster_dim
        self.backbone_facts = facts

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        class_token, features = self.backbone(images)
        return self.aggregator(features, class_token)


def convert_official(state: dict) -> tuple[dict, dict]:
    """An official ``VPRModel`` state dict → ours, and the options its shapes decide."""
    ours, backbone = official_dinov2_state(state, "backbone.model.", "backbone.vit.")
    ours.update({k: v for k, v in state.items() if k.startswith("aggregator.")})
    return ours, {"backbone": backbone, **aggregator_options(state, "aggregator.")}


def aggregator_options(state: dict, prefix: str) -> dict:
    """The SALAD aggregator's sizes, read from the shapes of its official keys under ``prefix``."""
    return {
        "clusters": state[prefix + "score.3.weight"].shape[0],
        "cluster_dim": state[prefix + "cluster_features.3.weight"].shape[0],
        "token_dim": state[prefix + "token_features.2.weight"].shape[0],
        "hidden": state[prefix + "score.0.weight"].shape[0],
    }


PUBLISHED = Published(
    paper="S. Izquierdo, J. Civera, Optimal Transport Aggregation for Visual Place Recognition, CVPR 2024",
    backbone="DINOv2 ViT-B/14 (final norm) + SALAD optimal-transport aggregation",
    descriptor_dim=8448,
    input_size=(322, 322),
    licence="GPL-3.0 (code and weights; DINOv2 Apache-2.0)",
    files=(
        OfficialFile(
            "dino_salad.ckpt",
            "https://github.com/serizba/salad/releases/download/v1.0.0/dino_salad.ckpt",
            note="loaded by hubconf.dinov2_salad; the README's Google Drive copy (eval.py), same layout: "
            "https://drive.google.com/file/d/1u83Dmqmm1-uikOPr58IIhfIzDYwFxCy1/view?usp=sharing",
        ),
    ),
    figures=reported(
        "serizba/salad README",
        "dino_salad.ckpt",
        (*MSLS_VAL, 92.2, 96.4),
        ("Nordland (its evaluation lists: 2,760 queries, ±1 frame)", NORDLAND_1[1], 76.0, 89.2),
        (*MSLS_CHALLENGE, 75.0, 88.8),
    )
    + reported(
        "paper Table 3, quoted in serizba/salad issue 6",
        "dino_salad.ckpt",
        (*PITTS30K, 95.1, 98.5),
        ("SPED", None, 92.1, 96.2),
        secondhand=True,
    ),
    preprocess="resize-first",
    interpolation="bilinear",
    mark="backbone.model.cls_token",
)


@register_published(
    "salad",
    "DINOv2 SALAD (Izquierdo & Civera, CVPR 2024): DINOv2 + Sinkhorn optimal-transport aggregation",
    PUBLISHED,
    SALADOptions,
    convert_official,
    trained_parts=TrainedParts(
        trains="the last num_trainable_blocks=4 DINOv2 blocks, its final norm and the SALAD aggregator",
        frozen="patch embedding, class token, position embedding and the earlier blocks (ViT-B/14: 0-7) "
        "when the trunk starts from pretrained weights",
        source="serizba/salad e593005: main.py (num_trainable_blocks=4, norm_layer=True, training at "
        "224×224), models/backbones/dinov2.py",
    ),
    # the paper's model is DINOv2's; a small demo: ViT-S/14 at 98×98 gives 7×7 = 49 patches, more than
    # the 16 clusters of a small SALAD (it needs more patches than clusters)
    presets={
        "paper": {"model.backbone": "dinov2_vitb14"},
        "demo": {
            "model.backbone": "dinov2_vits14",
            "data.image_size": (98, 98),
            "model.options": {"clusters": 16, "cluster_dim": 32, "token_dim": 64, "hidden": 128},
        },
    },
)
def salad(cfg: ModelConfig, options: SALADOptions) -> SALADNet:
    backbone, facts = vit_trunk(chosen_backbone(cfg, options), cfg, final_norm=True, method="salad")
    freeze_vit(backbone, options.num_trainable_blocks, facts, train_norm=True)
    aggregator = SALAD(
        facts["channels"], options.clusters, options.cluster_dim, options.token_dim, options.hidden
    )
    return SALADNet(backbone, aggregator, {k: facts[k] for k in ("weights", "mean", "std")})
