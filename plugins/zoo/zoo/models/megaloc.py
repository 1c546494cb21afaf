"""``megaloc``: MegaLoc (G. Berton, C. Masone, "MegaLoc: One Retrieval to Place Them All", CVPR Workshops
2025, arXiv:2502.17237), as its official code runs it at evaluation (gmberton/MegaLoc 1af071c, model code
of 4a23a2b, ``hubconf.get_trained_model``). Written from the facts of the reference fixture
(tests/data/megaloc), no code copied.

Network, on an ImageNet-normalised batch (B, 3, H, W):
- size: when H or W is not a multiple of 14, both become ``round(side / 14) * 14`` with Python's ``round``
  (ties to the even integer: 231 → 224, 245 → 252) and the normalised tensor is resized bilinearly with
  antialiasing (``align_corners=False``); multiples of 14 pass unchanged. The official evaluation
  (VPR-methods-evaluation) feeds each image at its own size, so this is MegaLoc's only resize;
- DINOv2 ViT-B/14 with its final LayerNorm (the dinov2 position-embedding resize, see ``_dinov2.py``) →
  class token t (B, 768) and patch features f (B, 768, h, w);
- SALAD's aggregation (``salad.py``) with 64 clusters of 256 channels and a 256-d token: 3 log-domain
  Sinkhorn iterations with a dust bin, per-cluster L2, channel-major flattening, L2 of the 16640-d concat;
- a Linear 16640 → 8448 with bias, then L2.

The official files are flat state dicts: the current ``model.safetensors`` (Hugging Face gberton/MegaLoc)
names the ViT ``backbone.*``, the legacy ``megaloc.torch`` (GitHub release v1.0) ``backbone.model.*`` plus
an unused ``mask_token``; both name the aggregator ``aggregator.agg.*`` (our ``aggregator.*``, SALAD's names)
and the linear ``aggregator.linear.*`` (our ``fc.*``). The file decides the backbone width, the cluster,
channel and token sizes and the descriptor size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vpr_bench.api import ConfigError, ModelConfig, option
from zoo.models._dinov2 import TIMM_NAMES, create_dinov2, official_dinov2_state
from zoo.models.salad import SALAD, aggregator_options
from zoo.published import OfficialFile, Published, register_published

PATCH = 14
RESIZE_ANTIALIAS = True  # torchvision's resize(..., antialias=True) of the normalised tensor
HUB = "https://huggingface.co/gberton/MegaLoc/resolve/main/"
RELEASE = "https://github.com/gmberton/MegaLoc/releases/download/v1.0/"


@dataclass(frozen=True)
class MegaLocOptions:
    backbone: str = option("dinov2_vitb14", f"DINOv2 backbone: {', '.join(TIMM_NAMES)} (a file decides it)")
    clusters: int = option(64, "clusters m of the optimal-transport assignment")
    cluster_dim: int = option(256, "channels of each cluster's aggregated feature")
    token_dim: int = option(256, "size of the global (class-token) feature")
    hidden: int = option(512, "hidden width of the aggregator's three MLPs")
    descriptor_dim: int = option(8448, "output size of the final Linear (an official file decides it)")

    def __post_init__(self) -> None:
        if self.backbone not in TIMM_NAMES:
            raise ValueError(f"backbone {self.backbone!r} is not one of {', '.join(TIMM_NAMES)}")


def patch_multiple(side: int) -> int:
    """The side MegaLoc resizes to: the nearest multiple of 14, ties to the even multiple (Python's round)."""
    return round(side / PATCH) * PATCH


def resized_to_patches(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) → (B, 3, H', W'), both sides multiples of 14 (unchanged when they already are)."""
    height, width = images.shape[-2:]
    if height % PATCH == 0 and width % PATCH == 0:
        return images
    size = (patch_multiple(height), patch_multiple(width))
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=RESIZE_ANTIALIAS)


class MegaLocNet(nn.Module):
    """(B, 3, H, W) → (B, descriptor_dim), L2-normalised: sides to multiples of 14, DINOv2, SALAD, Linear."""

    def __init__(self, backbone: nn.Module, aggregator: SALAD, descriptor_dim: int, facts: dict):
        super().__init__()
        self.backbone = backbone
        self.aggregator = aggregator
        self.clusters: int = aggregator.score[-1].out_channels
        token_dim = aggregator.token_features[-1].out_features
        pooled = token_dim + self.clusters * aggregator.cluster_features[-1].out_channels  # SALAD's output
        self.fc = nn.Linear(pooled, descriptor_dim)
        self.descriptor_dim = descriptor_dim
        self.backbone_facts = facts

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = resized_to_patches(images)
        rows, cols = images.shape[-2] // PATCH, images.shape[-1] // PATCH
        if rows * cols <= self.clusters:  # the dust bin's mass (n − m) / (n + m) must be positive
            raise ConfigError(
                f"MegaLoc needs more than {self.clusters} patches of 14 px, got {rows}×{cols} for a "
                f"{images.shape[-2]}×{images.shape[-1]} input: raise --image-size"
            )
        class_token, features = self.backbone(images)
        return F.normalize(self.fc(self.aggregator(features, class_token)), dim=-1)


def convert_official(state: dict) -> tuple[dict, dict]:
    """An official MegaLoc state dict (current or legacy layout) → ours, and the options its shapes decide."""
    prefix = "backbone.model." if "backbone.model.cls_token" in state else "backbone."
    ours, backbone = official_dinov2_state(state, prefix, "backbone.vit.")
    for key, value in state.items():
        if key.startswith("aggregator.agg."):
            ours["aggregator." + key[len("aggregator.agg.") :]] = value
        elif key.startswith("aggregator.linear."):
            ours["fc." + key[len("aggregator.linear.") :]] = value
        elif not key.startswith(prefix):
            ours[key] = value  # unknown: loading names it as unexpected
    options = {
        "backbone": backbone,
        **aggregator_options(state, "aggregator.agg."),
        "descriptor_dim": state["aggregator.linear.weight"].shape[0],
    }
    return ours, options


PUBLISHED = Published(
    paper="G. Berton, C. Masone, MegaLoc: One Retrieval to Place Them All, CVPR Workshops 2025",
    backbone="DINOv2 ViT-B/14 (final norm) + SALAD aggregation (64×256 + 256) + Linear 16640→8448",
    descriptor_dim=8448,
    input_size=None,  # VPR-methods-evaluation: each image at its own size, rounded by the model to 14 px
    licence="MIT (code: gmberton/MegaLoc LICENSE, © 2024 G. Berton, C. Masone; weights: their model card)",
    files=(
        OfficialFile(
            "model.safetensors",
            HUB + "model.safetensors",
            note="current (hubconf.get_trained_model, Hugging Face gberton/MegaLoc): flat, backbone.*",
        ),
        OfficialFile(
            "megaloc.torch",
            RELEASE + "megaloc.torch",
            note="legacy (hubconf until 0a6789f, 2025-12-07): flat, backbone.model.*, an unused mask_token",
        ),
    ),
    recall_at_1=(
        (
            "msls-val",
            91.0,
            "paper Table 1, R@10 95.8; secondhand: quoted in gmberton/VPR-methods-evaluation issue 19",
        ),
    ),
    # at native size nothing is resized; a given --image-size resizes the normalised tensor, antialiased,
    # as VPR-methods-evaluation's --image_size does (resize and normalisation commute)
    preprocess="tensor-resize-first",
    interpolation="bilinear",
    mark="aggregator.agg.dust_bin",
)


@register_published(
    "megaloc",
    "MegaLoc (Berton & Masone, CVPRW 2025): DINOv2 + SALAD aggregation + Linear to 8448 (the authors' files)",
    PUBLISHED,
    MegaLocOptions,
    convert_official,
)
def megaloc(cfg: ModelConfig, options: MegaLocOptions) -> MegaLocNet:
    backbone, facts = create_dinov2(options.backbone, cfg.pretrained, cfg.pretrained_file, final_norm=True)
    aggregator = SALAD(
        facts["channels"], options.clusters, options.cluster_dim, options.token_dim, options.hidden
    )
    return MegaLocNet(
        backbone, aggregator, options.descriptor_dim, {k: facts[k] for k in ("weights", "mean", "std")}
    )
