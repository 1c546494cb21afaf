"""``template-gem``: a timm backbone, GeM pooling, an optional linear projection and L2 normalisation.

GeM: Radenović, Tolias & Chum, "Fine-tuning CNN Image Retrieval with No Human Annotation", TPAMI 2019,
eq. 2. Replace the network below with yours; keep the contract: images (B, 3, H, W) → L2-normalised
descriptors (B, D), an int ``descriptor_dim`` and, with a timm backbone, ``backbone_facts``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vpr_bench import api


@dataclass(frozen=True)
class TemplateOptions:
    """Filled from ``--model-option KEY=VALUE``; an unknown key or a value out of bounds fails by name."""

    p: float = api.option(3.0, "initial GeM exponent", above=0)
    learn_p: bool = api.option(True, "learn the GeM exponent with the network")
    layers_to_freeze: int = api.option(
        -1,
        "training: the backbone's feature stages 0..N stay frozen when it starts from pretrained weights "
        "(ResNet 2: conv1, bn1, layer1, layer2, as MixVPR and GSV-Cities train); -1: none",
        minimum=-1,
    )


class TemplateNet(nn.Module):
    def __init__(self, backbone: nn.Module, channels: int, options: TemplateOptions, out_dim: int | None):
        super().__init__()
        self.backbone = backbone
        self.pool = api.GeM(options.p, learnable=options.learn_p)
        self.projection = nn.Linear(channels, out_dim) if out_dim else nn.Identity()
        self.norm = api.L2Norm()
        self.descriptor_dim = out_dim or channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)[-1]  # (B, C, h, w): the last (or --backbone-stage) feature map
        return self.norm(self.projection(self.pool(features)))  # (B, D)


@api.register_method(
    "template-gem",
    "template plugin: timm backbone + GeM (+ optional projection) + L2",
    options=TemplateOptions,
    descriptor_dim=True,  # --descriptor-dim adds the projection
    presets={"paper": {"model.descriptor_dim": 2048}},  # over the preset's values; flags still win
    # what `vpr-bench list --method template-gem` says trains; a run's record lists it as built
    trained_parts=api.TrainedParts(
        trains="the backbone after stage layers_to_freeze, GeM's exponent and the projection",
        frozen="the backbone's stages 0..layers_to_freeze when it starts from pretrained weights "
        "(default -1: nothing)",
    ),
)
def template_gem(cfg: api.ModelConfig, options: TemplateOptions) -> TemplateNet:
    # --backbone, --backbone-stage, --pretrained/--no-pretrained and --pretrained-file, in one place
    backbone, facts = api.create_backbone(
        cfg.backbone, cfg.pretrained, cfg.pretrained_file, cfg.backbone_stage
    )
    if not facts["weights"].startswith("random"):  # pretrained weights: freeze what a paper freezes
        for module in api.leading_stages(backbone, options.layers_to_freeze):
            module.requires_grad_(False)
    model = TemplateNet(backbone, facts["channels"], options, cfg.descriptor_dim)
    model.backbone_facts = facts  # weights origin and input mean/std, for the loader and the record
    return model
