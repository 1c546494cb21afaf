"""``supervlad``: SuperVLAD (F. Lu, X. Zhang, C. Ye, S. Dong, L. Zhang, X. Lan, C. Yuan, "SuperVLAD:
Compact and Robust Image Descriptors for Visual Place Recognition", NeurIPS 2024), as its official code
runs it at evaluation (Lu-Feng/SuperVLAD d994ba4, ``eval.py`` with the README's test command).

Network, images 322×322 → a 23×23 patch grid:
- DINOv2 ViT-B/14 (``_dinov2``) with its final norm: the patch features (B, 768, h, w), each
  L2-normalised over its channels;
- SuperVLAD: a bias-free 1×1 convolution to K + G rows (4 clusters and 1 ghost), softmax over the rows;
  each cluster's sum of the features themselves weighted by their assignment (no centroids are
  subtracted: SuperVLAD has none), the ghost rows (the last G) dropped; each cluster L2-normalised,
  flattened cluster-major (index k·768 + c), L2-normalised;
- the cross-image encoder (``_cross_image``: the images of one forward pass attend to each other) over
  the K cluster vectors, flattened cluster-major and L2-normalised: 3072-d. **Batch-dependent**: the
  official evaluation describes the database, then the queries, in batches of 8 (the README's test
  command) in the dataset's order; those batches are the preset (``--eval-batch-size``; 1: one image at
  a time).

The file decides the variant: the released model with the encoder (4 + 1 rows, 3072-d), the one
without it (3072-d, batch-independent) and 1-ClusterVLAD (3 rows without an encoder: 1 cluster + 2
ghosts, 768-d, the released ``--supervlad_clusters=1 --ghost_clusters=2``; other row counts are read as
K clusters + 1 ghost). The official files (``{"model_state_dict": {"module." + key: …}}``, as its
train.py saves them) keep our names but for the backbone (``backbone.*`` → timm's under
``backbone.vit.``, ``mask_token`` dropped). Verified against the official code's outputs
(tests/data/supervlad).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vpr_bench.api import ModelConfig, option
from zoo.models._cross_image import cross_image_encoder, describe_batch, encoder_options
from zoo.models._dinov2 import TIMM_NAMES, create_dinov2, official_dinov2_state
from zoo.published import OfficialFile, Published, register_published

MARK = "aggregation.conv.weight"
ONE_CLUSTER_ROWS = 3  # 1-ClusterVLAD's release: 1 cluster + 2 ghosts


@dataclass(frozen=True)
class SuperVLADOptions:
    backbone: str = option("dinov2_vitb14", f"DINOv2 backbone: {', '.join(TIMM_NAMES)} (a file decides it)")
    clusters: int = option(4, "clusters K (descriptor K·768; a file decides it)", minimum=1)
    ghost_clusters: int = option(1, "ghost clusters, dropped after the assignment (a file decides it)")
    encoder_layers: int = option(2, "layers of the cross-image encoder, 0: none (a file decides it)")
    encoder_feedforward: int = option(2048, "feed-forward width of the encoder (a file decides it)")

    def __post_init__(self) -> None:
        if self.backbone not in TIMM_NAMES:
            raise ValueError(f"backbone {self.backbone!r} is not one of {', '.join(TIMM_NAMES)}")


class SuperVLAD(nn.Module):
    """(B, C, h, w) feature map → (B, K·C): SuperVLAD's cluster sums, intra- and L2-normalised."""

    def __init__(self, channels: int, clusters: int, ghost_clusters: int):
        super().__init__()
        self.clusters = clusters
        self.conv = nn.Conv2d(channels, clusters + ghost_clusters, 1, bias=False)

    def soft_assign(self, features: torch.Tensor) -> torch.Tensor:
        """(B, K + G, h·w): each patch's assignment to the clusters and the ghosts (the last G rows)."""
        return F.softmax(self.conv(F.normalize(features, dim=1)).flatten(2), dim=1)

    def cluster_sums(self, features: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
        """(B, K, C): each real cluster's sum of the L2-normalised features weighted by assignment."""
        normalised = F.normalize(features, dim=1).flatten(2)  # (B, C, h·w)
        return torch.einsum("bkn,bcn->bkc", assignment[:, : self.clusters], normalised)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        sums = self.cluster_sums(features, self.soft_assign(features))
        return F.normalize(F.normalize(sums, dim=2).flatten(1), dim=-1)  # index k·C + c


class SuperVLADNet(nn.Module):
    """Images → (B, K·C); with an encoder, each descriptor depends on the other images of the batch."""

    def __init__(self, backbone: nn.Module, aggregation: SuperVLAD, encoder: nn.Module | None, facts: dict):
        super().__init__()
        self.backbone = backbone
        self.aggregation = aggregation
        self.encoder = encoder
        self.batch_dependent = encoder is not None
        self.descriptor_dim: int = aggregation.clusters * aggregation.conv.in_channels
        self.backbone_facts = facts

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        descriptors = self.aggregation(self.backbone(images)[1])
        if self.encoder is None:
            return descriptors
        return describe_batch(self.encoder, descriptors.view(len(images), self.aggregation.clusters, -1))


def convert_official(state: dict) -> tuple[dict, dict]:
    """An official ``SuperVLADModel`` state dict → ours, and the variant its keys and shapes decide."""
    ours, backbone = official_dinov2_state(state, "backbone.", "backbone.vit.")
    ours.update({k: v for k, v in state.items() if k.startswith(("aggregation.", "encoder."))})
    rows = state[MARK].shape[0]
    encoder = encoder_options(state)
    ghosts = 2 if rows == ONE_CLUSTER_ROWS and not encoder["encoder_layers"] else 1
    return ours, {"backbone": backbone, "clusters": rows - ghosts, "ghost_clusters": ghosts, **encoder}


def _drive(link: str) -> str:
    return f"https://drive.google.com/file/d/{link}/view?usp=drive_link"


PUBLISHED = Published(
    paper=(
        "F. Lu, X. Zhang, C. Ye, S. Dong, L. Zhang, X. Lan, C. Yuan, SuperVLAD: Compact and Robust Image "
        "Descriptors for Visual Place Recognition, NeurIPS 2024"
    ),
    backbone="DINOv2 ViT-B/14 + SuperVLAD (4 clusters + 1 ghost) + cross-image encoder; the file decides",
    descriptor_dim=3072,
    input_size=(322, 322),
    licence="MIT (Lu-Feng/SuperVLAD; its vendored DINOv2 code Apache-2.0)",
    files=(
        OfficialFile(
            "SuperVLAD.pth",
            _drive("1yomnWGTJko6nf3F2Ju6RWsLhP2EG82tL"),
            note="with the cross-image encoder, 3072-d (README 'Trained Model'; the test command's name)",
        ),
        OfficialFile(
            "SuperVLAD-no-encoder.pth",
            _drive("1wRkUO4E8s5hNRNNIWcuA8RUvlGob3Tbf"),
            note="without the encoder, 3072-d (README 'Trained Model'; file name ours)",
        ),
        OfficialFile(
            "1-ClusterVLAD.pth",
            _drive("1pQcJx9n2-keAh9TttssZkz6D0vjpFWU6"),
            note="1 cluster + 2 ghosts, no encoder, 768-d (README 'Trained Model'; file name ours)",
        ),
    ),
    # datasets_ws.py: ToTensor → Normalize → resize of the tensor to 322×322, bilinear, without antialias
    # (the pinned torchvision 0.15)
    preprocess="normalize-first",
    interpolation="bilinear",
    mark=MARK,
    extra={
        "code": "Lu-Feng/SuperVLAD d994ba4",
        "batching": "test.py: database, then queries, in batches of --infer_batch_size (8 in the README's "
        "test command, 16 by default) in the dataset's order, last one partial",
    },
    batch_size=8,
)


@register_published(
    "supervlad",
    "SuperVLAD (Lu et al., NeurIPS 2024): DINOv2 + VLAD without centroids + cross-image encoder "
    "(batch-dependent)",
    PUBLISHED,
    SuperVLADOptions,
    convert_official,
)
def supervlad(cfg: ModelConfig, options: SuperVLADOptions) -> SuperVLADNet:
    backbone, facts = create_dinov2(options.backbone, cfg.pretrained, cfg.pretrained_file, final_norm=True)
    aggregation = SuperVLAD(facts["channels"], options.clusters, options.ghost_clusters)
    encoder = None
    if options.encoder_layers:
        encoder = cross_image_encoder(facts["channels"], options.encoder_layers, options.encoder_feedforward)
    return SuperVLADNet(backbone, aggregation, encoder, {k: facts[k] for k in ("weights", "mean", "std")})
