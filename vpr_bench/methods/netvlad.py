"""``netvlad``: timm backbone (conv features) + NetVLAD + optional PCA-whitening.

The model only takes arrays (``FittedFromData``): centroids from sampled local features
(``init_from_features``), a whitening matrix (``set_whitening``). The training package decides when:
k-means before training (and for ``--untrained`` evaluation), PCA-whitening after it on the best weights
— as in NetVLAD, training and mining see the un-whitened VLAD descriptor (``vpr_bench.training.fitting``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vpr_bench.config import ModelConfig
from vpr_bench.layers import NetVLAD
from vpr_bench.methods.backbones import create_backbone
from vpr_bench.options import option
from vpr_bench.registry import register_method


@dataclass(frozen=True)
class NetVLADOptions:
    clusters: int = option(64, "NetVLAD clusters K (descriptor: K × backbone channels)")
    pca_dim: int | None = option(None, "PCA-whiten the descriptor to this size after training")
    sharpness: float = option(
        100.0, "initial soft assignment: nearest centroid this many times as likely as the second"
    )

    def __post_init__(self):
        if self.clusters < 1:
            raise ValueError("clusters must be ≥ 1")
        if self.pca_dim is not None and self.pca_dim < 1:
            raise ValueError("pca_dim must be ≥ 1")
        if self.sharpness <= 1:
            raise ValueError("sharpness must be > 1")


class NetVLADNet(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        channels: int,
        clusters: int,
        pca_dim: int | None = None,
        sharpness: float = 100.0,
    ):
        super().__init__()
        self.sharpness = sharpness
        self.backbone = backbone
        self.pool = NetVLAD(clusters, channels)
        self.pca_dim = pca_dim
        if pca_dim:
            self.whiten = nn.Linear(self.pool.output_dim, pca_dim)
            self.register_buffer("whitening_fitted", torch.tensor(False))

    @property
    def descriptor_dim(self) -> int:
        """The VLAD size, or ``pca_dim`` once the whitening is fitted."""
        whitened = self.pca_dim and bool(self.whitening_fitted)
        return self.pca_dim if whitened else self.unwhitened_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        vlad = self.pool(self.backbone(images)[-1])
        if self.pca_dim and bool(self.whitening_fitted):
            return F.normalize(self.whiten(vlad), dim=1)
        return vlad

    # ---- FittedFromData -------------------------------------------------------------------------
    def local_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)[-1].flatten(2).transpose(1, 2)  # (B, h·w, C)

    def init_from_features(self, features: np.ndarray, seed: int) -> None:
        """k-means centroids (faiss) and the initial soft assignment (see ``NetVLAD``)."""
        self.pool.init_from_features(features, seed=seed, sharpness=self.sharpness)

    @property
    def whitening_dim(self) -> int | None:
        return self.pca_dim

    @property
    def unwhitened_dim(self) -> int:
        return self.pool.output_dim

    def set_whitening(self, matrix: np.ndarray | None, bias: np.ndarray | None) -> None:
        if not self.pca_dim:
            raise ValueError("this NetVLAD has no whitening layer (pca_dim is not set)")
        with torch.no_grad():
            if matrix is None:
                self.whitening_fitted.fill_(False)
                return
            self.whiten.weight.copy_(torch.as_tensor(matrix, dtype=torch.float32))
            self.whiten.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
            self.whitening_fitted.fill_(True)


@register_method(
    "netvlad",
    "timm backbone + NetVLAD (k-means initialised) + optional PCA-whitening",
    options=NetVLADOptions,
    descriptor_dim=False,
    descriptor_dim_hint="its size is clusters × channels; use --model-option pca_dim=N to whiten",
    # 48×64 images leave only 3×4 features after layer3: the demo aggregates layer2's 6×8 instead, with 16
    # clusters, and starts from a soft assignment (see NetVLAD.init_from_features)
    presets={"demo": {"model.backbone_stage": 2, "model.options": {"clusters": 16, "sharpness": 3.0}}},
)
def netvlad(cfg: ModelConfig, options: NetVLADOptions) -> NetVLADNet:
    backbone, facts = create_backbone(cfg.backbone, cfg.pretrained, cfg.pretrained_file, cfg.backbone_stage)
    model = NetVLADNet(backbone, facts["channels"], options.clusters, options.pca_dim, options.sharpness)
    model.backbone_facts = facts
    return model
