"""The trunks the trainable published models (MixVPR, Conv-AP, BoQ, SALAD) are built on from a backbone
alone, and the parts of them their papers freeze in training.

Which trunk: the model's ``backbone`` option where it is set away from the paper's (an official file sets
it, or ``--model-option backbone=…``), else ``--backbone``: one of the paper's family — a torchvision ResNet
(timm ``<name>.tv_in1k``: torchvision's ImageNet weights, as the authors load them) or a DINOv2 hub name
(timm ``vit_*_patch14_dinov2``) — or any other timm model: a CNN (``features_only``, cut after a feature
stage) or, for the DINOv2 families, a ViT with one class token. The aggregators take their input sizes
from the trunk, so tiny timm models build the same architecture.

Freezing is the official code's: ``requires_grad_(False)`` on the frozen parts, whose BatchNorm layers keep
training mode (their running statistics still follow the training images), and only where the trunk
starts from pretrained weights (``--pretrained`` when they are at hand, or ``--pretrained-file``), as
their ``if pretrained:`` does it (amaralibey/MixVPR 4043915 and amaralibey/gsv-cities 77ffffc
``models/backbones/resnet.py``, amaralibey/Bag-of-Queries 1a4965e ``src/backbones.py`` ``ResNet``; their
DINOv2 trunks always load the pretrained weights): a trunk that starts from random weights trains whole.
"""

from __future__ import annotations

import dataclasses

import timm
from torch import nn

from vpr_bench.api import ConfigError, ModelConfig, create_backbone, leading_stages
from zoo.models._dinov2 import TIMM_NAMES, DinoV2, create_dinov2
from zoo.models._resnet import RESNET_BLOCKS, resnet_trunk


def chosen_backbone(cfg: ModelConfig, options) -> str:
    """The trunk to build: ``options.backbone`` where it differs from its default (the paper's), else
    ``cfg.backbone`` (``--backbone``)."""
    default = next(f.default for f in dataclasses.fields(options) if f.name == "backbone")
    return options.backbone if options.backbone != default else cfg.backbone


def starts_pretrained(facts: dict) -> bool:
    """Whether the trunk starts from pretrained weights, from its facts: what was loaded, not what was asked
    (``--pretrained`` with the hub unreachable and nothing cached starts from random weights)."""
    return not str(facts["weights"]).startswith("random")


def is_vit(name: str) -> bool:
    """A DINOv2 hub name or a timm model of its ``vision_transformer`` family."""
    arch = name.split(".")[0]
    if name in TIMM_NAMES:
        return True
    return timm.is_model(arch) and timm.models.is_model_in_modules(arch, ["vision_transformer"])


def cnn_trunk(name: str, stage: int, cfg: ModelConfig, method: str) -> tuple[nn.Module, dict]:
    """The convolutional trunk ``name`` from its input through feature stage ``stage`` (ResNet: layer<N>),
    returning [(B, C, h, w)], and ``create_backbone``'s facts."""
    if name in RESNET_BLOCKS:
        return resnet_trunk(name, stage, cfg.pretrained, cfg.pretrained_file)
    if is_vit(name):
        raise ConfigError(f"--backbone {name}: {method} aggregates a convolutional feature map; give a CNN")
    try:
        return create_backbone(name, cfg.pretrained, cfg.pretrained_file, out_index=stage)
    except (AssertionError, IndexError):  # timm: no such feature stage
        raise ConfigError(
            f"--backbone {name} has no feature stage {stage} to cut {method}'s trunk after"
        ) from None


def vit_trunk(name: str, cfg: ModelConfig, final_norm: bool, method: str) -> tuple[DinoV2, dict]:
    """A DINOv2 hub name or a timm ViT with one class token, run as DINOv2 runs it (``DinoV2``)."""
    if not is_vit(name) and timm.is_model(name.split(".")[0]):
        raise ConfigError(
            f"--backbone {name}: {method} needs a ViT with a class token (e.g. dinov2_vitb14, "
            "vit_small_patch14_dinov2)"
        )
    return create_dinov2(name, cfg.pretrained, cfg.pretrained_file, final_norm)


def freeze_stages(trunk: nn.Module, through: int, facts: dict) -> None:
    """MixVPR's and GSV-Cities' ``layers_to_freeze``: the trunk's stages 0..``through`` frozen (ResNet 2:
    conv1, bn1, layer1, layer2); -1 none."""
    frozen = leading_stages(trunk, through)  # checked either way: a stage the trunk lacks fails
    if starts_pretrained(facts):
        for module in frozen:
            module.requires_grad_(False)


def freeze_all_but_last(trunk: nn.Module, count: int, facts: dict) -> None:
    """BoQ's ``unfreeze_n_blocks`` on a CNN trunk: all but its last ``count`` modules frozen (ResNet cut
    after layer3, 2: conv1, bn1, layer1 frozen; layer2, layer3 train)."""
    modules = list(trunk.children())
    if count > len(modules):
        raise ConfigError(f"unfreeze_n_blocks={count}: the trunk has {len(modules)} modules")
    if starts_pretrained(facts):
        for module in modules[: len(modules) - count]:
            module.requires_grad_(False)


def freeze_vit(trunk: DinoV2, trainable_blocks: int, facts: dict, train_norm: bool) -> None:
    """BoQ's ``unfreeze_n_blocks`` and SALAD's ``num_trainable_blocks``: every parameter of the ViT frozen
    but its last ``trainable_blocks`` blocks (and, ``train_norm``, its final norm, which SALAD applies after
    them and trains)."""
    blocks = trunk.vit.blocks
    if trainable_blocks > len(blocks):
        raise ConfigError(f"{trainable_blocks} trainable blocks: the ViT has {len(blocks)}")
    if not starts_pretrained(facts):
        return
    trunk.requires_grad_(False)
    for block in blocks[len(blocks) - trainable_blocks :]:
        block.requires_grad_(True)
    if train_norm:
        trunk.vit.norm.requires_grad_(True)
