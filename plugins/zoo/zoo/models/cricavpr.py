"""``cricavpr``: CricaVPR (F. Lu, X. Lan, L. Zhang, D. Jiang, Y. Wang, C. Yuan, "CricaVPR: Cross-image
Correlation-aware Representation Learning for Visual Place Recognition", CVPR 2024), as its official code
runs it at evaluation (Lu-Feng/CricaVPR f53e941, ``hubconf.trained_model`` / ``eval.py``).

Network, images 224×224 → a 16×16 patch grid:
- DINOv2 ViT-B/14 (``_dinov2``) whose every block adds a multi-scale convolution adapter to its MLP,
  inside LayerScale: ``h = x + ls1(attn(norm1(x)))``, ``n = norm2(h)``,
  ``out = h + ls2(mlp(n) + 0.2·adapter(n))``; then the final norm;
- adapter: ``a = relu(down(n))`` (768 → 384); the patch rows of ``a`` as a grid through three branches of
  conv + BatchNorm (eps 1e-3) + ReLU (1×1 → 192; 1×1 → 24, 3×3 → 96; 1×1 → 24, 5×5 → 96), concatenated;
  the class row of ``a`` prepended; ``a`` added (so the class row is 2·a_cls); ``up`` (384 → 768);
- 14 tokens per image: the class token (as is) and GeM (p learnt) of the L2-normalised patch features over
  13 regions of the grid, 2×2 then 3×3, row-major (16 rows split 0:8, 8:16 and 0:5, 5:11, 11:16);
- the cross-image encoder (``_cross_image``: the images of one forward pass attend to each other), its
  output flattened token-major (index t·768 + c) and L2-normalised: 10752-d. **Batch-dependent**: the
  official evaluation describes the database, then the queries, in batches of 16 in the dataset's order
  (8 on Pitts30k/250k); those batches are the preset (``--eval-batch-size``; 1: one image at a time).

Other grids (another ``--image-size``) split their rows and columns at round(i·n/k), which gives the
official regions on 16×16. The official files (``{"model_state_dict": {"module." + key: …}}``, as its
train.py saves them, beside an optimizer state and numpy recalls) keep our names but for the backbone
(``backbone.*`` → timm's under ``backbone.vit.``, ``mask_token`` dropped), the adapters
(``backbone.blocks.<i>.adapter.{D_fc1,D_fc2}`` → ``backbone.adapters.<i>.{down,up}``) and GeM's p
(``aggregation.1.p`` (1,) → ``gem.p``). The file decides the backbone width (adapter = width / 2) and the
encoder. Verified against the official code's outputs (tests/data/cricavpr).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vpr_bench.api import ConfigError, GeM, ModelConfig, option
from zoo.models._cross_image import cross_image_encoder, describe_batch, encoder_options
from zoo.models._dinov2 import TIMM_NAMES, DinoV2, create_dinov2, official_dinov2_state
from zoo.published import OfficialFile, Published, register_published

ADAPTER_SCALE = 0.2  # the adapter's output, inside LayerScale
ADAPTER_BN_EPS = 1e-3
REGION_SPLITS = (2, 3)  # the grid split 2×2, then 3×3
MARK = "backbone.blocks.0.adapter.D_fc1.weight"


@dataclass(frozen=True)
class CricaVPROptions:
    backbone: str = option("dinov2_vitb14", f"DINOv2 backbone: {', '.join(TIMM_NAMES)} (a file decides it)")
    encoder_layers: int = option(2, "layers of the cross-image encoder (a file decides it)", minimum=1)
    encoder_feedforward: int = option(2048, "feed-forward width of the encoder (a file decides it)")

    def __post_init__(self) -> None:
        if self.backbone not in TIMM_NAMES:
            raise ValueError(f"backbone {self.backbone!r} is not one of {', '.join(TIMM_NAMES)}")


class ConvBNReLU(nn.Sequential):
    def __init__(self, channels: int, out: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, out, kernel, padding=kernel // 2)
        self.bn = nn.BatchNorm2d(out, eps=ADAPTER_BN_EPS)
        self.relu = nn.ReLU()


class MultiScaleConvAdapter(nn.Module):
    """(B, 1 + rows·cols, C) normed tokens → (B, 1 + rows·cols, C); widths in the official proportions
    (C 768: hidden 384, branches 192 + 96 + 96 after 24-channel reductions)."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = channels // 2
        self.down = nn.Linear(channels, hidden)
        self.branch1 = ConvBNReLU(hidden, hidden // 2, 1)
        self.branch2 = nn.Sequential(
            ConvBNReLU(hidden, hidden // 16, 1), ConvBNReLU(hidden // 16, hidden // 4, 3)
        )
        self.branch3 = nn.Sequential(
            ConvBNReLU(hidden, hidden // 16, 1), ConvBNReLU(hidden // 16, hidden // 4, 5)
        )
        self.up = nn.Linear(hidden, channels)

    def forward(self, tokens: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        hidden = F.relu(self.down(tokens))  # (B, 1 + n, hidden)
        grid = hidden[:, 1:].transpose(1, 2).reshape(len(tokens), -1, rows, cols)  # row-major
        local = torch.cat([self.branch1(grid), self.branch2(grid), self.branch3(grid)], dim=1)
        mixed = torch.cat([hidden[:, :1], local.flatten(2).transpose(1, 2)], dim=1)
        return self.up(mixed + hidden)


class AdaptedDinoV2(DinoV2):
    """DINOv2 with an adapter beside every block's MLP; final norm: (class token, feature map)."""

    def __init__(self, vit: nn.Module):
        super().__init__(vit, final_norm=True)
        self.adapters = nn.ModuleList(MultiScaleConvAdapter(self.channels) for _ in vit.blocks)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, rows, cols = self.tokens(images)
        for block, adapter in zip(self.vit.blocks, self.adapters, strict=True):
            tokens = tokens + block.ls1(block.attn(block.norm1(tokens)))
            normed = block.norm2(tokens)
            tokens = tokens + block.ls2(block.mlp(normed) + ADAPTER_SCALE * adapter(normed, rows, cols))
        tokens = self.vit.norm(tokens)
        patches = tokens[:, 1:].transpose(1, 2).reshape(len(images), self.channels, rows, cols)
        return tokens[:, 0], patches


def region_bounds(size: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` consecutive ranges over ``size`` rows (columns), split at round(i·size/parts)."""
    if size < parts:
        raise ConfigError("CricaVPR's 3×3 regions need a patch grid of 3×3 or more: raise --image-size")
    cuts = [int(i * size / parts + 0.5) for i in range(parts + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(parts)]


class CricaVPRNet(nn.Module):
    """Images → (B, 14·C) descriptors, each depending on the other images of the batch."""

    batch_dependent = True

    def __init__(self, backbone: AdaptedDinoV2, encoder: nn.TransformerEncoder, facts: dict):
        super().__init__()
        self.backbone = backbone
        self.gem = GeM(p=3.0, eps=1e-6)
        self.encoder = encoder
        self.descriptor_dim: int = (1 + sum(k * k for k in REGION_SPLITS)) * backbone.channels
        self.backbone_facts = facts

    def image_tokens(self, class_token: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """(B, C) class token, (B, C, rows, cols) map → (B, 14, C): the class token and 13 regional GeMs."""
        features = F.normalize(features, dim=1)
        tokens = [class_token]
        for parts in REGION_SPLITS:
            columns = region_bounds(features.shape[3], parts)
            for top, bottom in region_bounds(features.shape[2], parts):  # row-major
                tokens += [self.gem(features[:, :, top:bottom, left:right]) for left, right in columns]
        return torch.stack(tokens, dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return describe_batch(self.encoder, self.image_tokens(*self.backbone(images)))


def convert_official(state: dict) -> tuple[dict, dict]:
    """An official ``CricaVPRNet`` state dict → ours, and the options its shapes decide."""
    ours, backbone = official_dinov2_state(state, "backbone.", "backbone.vit.")
    renamed = {}
    for key, value in ours.items():
        key = re.sub(r"^backbone\.vit\.blocks\.(\d+)\.adapter\.", r"backbone.adapters.\1.", key)
        renamed[key.replace(".D_fc1.", ".down.").replace(".D_fc2.", ".up.")] = value
    renamed.update({k: v for k, v in state.items() if k.startswith("encoder.")})
    renamed["gem.p"] = state["aggregation.1.p"].reshape(())  # (1,) → the scalar of our GeM
    options = {"backbone": backbone, **encoder_options(state)}
    if options["encoder_layers"] == 0:
        raise KeyError("encoder.layers.0.* (the cross-image encoder)")
    return renamed, options


PUBLISHED = Published(
    paper=(
        "F. Lu, X. Lan, L. Zhang, D. Jiang, Y. Wang, C. Yuan, CricaVPR: Cross-image Correlation-aware "
        "Representation Learning for Visual Place Recognition, CVPR 2024"
    ),
    backbone="DINOv2 ViT-B/14 with convolution adapters + regional GeM + cross-image encoder",
    descriptor_dim=10752,
    input_size=(224, 224),
    licence="MIT (Lu-Feng/CricaVPR; its vendored DINOv2 code Apache-2.0)",
    files=(
        OfficialFile(
            "CricaVPR.pth",
            "https://github.com/Lu-Feng/CricaVPR/releases/download/v1.0/CricaVPR.pth",
            note="loaded by hubconf.trained_model; the README's Google Drive copy (eval.py), same layout: "
            "https://drive.google.com/file/d/171lCcxZFFnvEvo88ntIwELeBegcMTEJs/view?usp=sharing",
        ),
    ),
    # datasets_ws.py: ToTensor → Normalize → resize of the tensor to 224×224, bilinear, without antialias
    # (the pinned torchvision 0.15)
    preprocess="normalize-first",
    interpolation="bilinear",
    mark=MARK,
    extra={
        "code": "Lu-Feng/CricaVPR f53e941",
        "batching": "test.py: database, then queries, in batches of 16 in the dataset's order, last one "
        "partial; eval.py halves them to 8 for Pitts30k/250k (pass --eval-batch-size 8 there)",
    },
    batch_size=16,
)


@register_published(
    "cricavpr",
    "CricaVPR (Lu et al., CVPR 2024): adapted DINOv2 + regional GeM + cross-image encoder (batch-dependent)",
    PUBLISHED,
    CricaVPROptions,
    convert_official,
)
def cricavpr(cfg: ModelConfig, options: CricaVPROptions) -> CricaVPRNet:
    vit_backbone, facts = create_dinov2(
        options.backbone, cfg.pretrained, cfg.pretrained_file, final_norm=True
    )
    backbone = AdaptedDinoV2(vit_backbone.vit)
    encoder = cross_image_encoder(backbone.channels, options.encoder_layers, options.encoder_feedforward)
    return CricaVPRNet(backbone, encoder, {k: facts[k] for k in ("weights", "mean", "std")})
