"""``gem``: a timm backbone, GeM pooling (learnable p), an optional FC and L2 normalisation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vpr_bench.config import ModelConfig
from vpr_bench.layers import GeM, L2Norm
from vpr_bench.methods.backbones import create_backbone
from vpr_bench.options import option
from vpr_bench.registry import register_method


@dataclass(frozen=True)
class GeMOptions:
    p: float = option(3.0, "initial GeM exponent (learnable)")


class GeMNet(nn.Module):
    def __init__(self, backbone: nn.Module, channels: int, fc_dim: int | None = None, p: float = 3.0):
        super().__init__()
        self.backbone = backbone
        self.pool = GeM(p)
        self.fc = nn.Linear(channels, fc_dim) if fc_dim else nn.Identity()
        self.norm = L2Norm()
        self.descriptor_dim = fc_dim or channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)[-1]  # (B, C, h, w)
        return self.norm(self.fc(self.pool(features)))


@register_method(
    "gem",
    "timm backbone + GeM pooling (+ optional FC) + L2 (Radenović et al. 2019)",
    options=GeMOptions,
    descriptor_dim=True,  # an FC layer after GeM
)
def gem(cfg: ModelConfig, options: GeMOptions) -> GeMNet:
    backbone, facts = create_backbone(cfg.backbone, cfg.pretrained, cfg.pretrained_file, cfg.backbone_stage)
    model = GeMNet(backbone, facts["channels"], cfg.descriptor_dim, options.p)
    model.backbone_facts = facts
    return model
