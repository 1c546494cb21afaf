"""``netvlad-vgg16``: VGG16 conv5_3 features + NetVLAD + WPCA, as Patch-NetVLAD publishes it.

Papers: Arandjelović et al., "NetVLAD: CNN architecture for weakly supervised place recognition", CVPR 2016
(arXiv:1511.07247); the checkpoints are those of Hausler et al., "Patch-NetVLAD: Multi-Scale Fusion of
Locally-Global Descriptors for Place Recognition", CVPR 2021 (arXiv:2103.01486), whose global descriptor is
this network's. Follows QVPR/Patch-NetVLAD at commit 39ab4e45725b1e7558dc9b108d31a7f3ce900614
(``models_generic.get_backend/get_model/get_pca_encoding``, ``models/netvlad.NetVLAD``, the netvlad branch
of ``feature_extract.py``); written from the facts in tests/data/netvlad's README, no code copied.

What the authors' network computes at evaluation (480×640 images, ImageNet normalisation):
- encoder: torchvision VGG16 ``features`` up to conv5_3, **without** its ReLU and the last max-pool
  (indices 0…28; timm's ``vgg16`` has the same layer indices, so the keys ``encoder.N.*`` carry over);
- NetVLAD "v1": local features L2-normalised over channels, 1×1 conv without bias → softmax over the K
  clusters, residuals to the centroids summed, intra-normalised per cluster, then L2 over the K·512 vector;
- WPCA: ``Conv2d(K·512, D, 1)`` with bias on the VLAD vector (here the same map as a Linear), then L2.

Their files (``add_pca.py``) are ``torch.save({'num_pcs': D, 'state_dict': ...})`` without ``module.``
prefixes. The file decides K (from ``pool.centroids``, as the official loader reads it: 64 in the
Pittsburgh files, 16 in the Mapillary ones) and D (from ``WPCA.0.bias``: 4096, 512 or 128).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vpr_bench.api import L2Norm, ModelConfig, NetVLAD, create_timm_model, normalisation, option
from zoo.published import PITTS30K, OfficialFile, Published, register_published, reported

CONV5_3_END = 29  # vgg16.features[:29]: conv1_1 … conv5_3, before conv5_3's ReLU and the last max-pool
VGG16_CHANNELS = 512
HUB = "https://huggingface.co/TobiasRobotics/Patch-NetVLAD/resolve/main/"


def _official(name: str, note: str) -> OfficialFile:
    return OfficialFile(name, HUB + name, note=note)


PUBLISHED = Published(
    paper=(
        "Arandjelović et al., NetVLAD: CNN architecture for weakly supervised place recognition, CVPR 2016; "
        "checkpoints of Hausler et al., Patch-NetVLAD, CVPR 2021"
    ),
    backbone="vgg16 (torchvision features to conv5_3, no final ReLU)",
    descriptor_dim=4096,
    input_size=(480, 640),  # datasets.input_transform((480, 640)): exact H×W, aspect ratio not kept
    licence="MIT (QVPR/Patch-NetVLAD code); the weight files state no licence of their own",
    # K is read from each file; 64 (Pittsburgh) and 16 (Mapillary) are inferred from the repository's
    # history (issue #10, the old num_clusters = 16 configs), not verified on the files themselves
    files=(
        _official("pitts_WPCA4096.pth.tar", "Pittsburgh, K=64, 4096-d (download_models.py: pittsburgh_…)"),
        _official("mapillary_WPCA4096.pth.tar", "Mapillary, K=16, 4096-d"),
        _official("pitts_WPCA512.pth.tar", "Pittsburgh, K=64, 512-d"),
        _official("pitts_WPCA128.pth.tar", "Pittsburgh, K=64, 128-d"),
        _official("mapillary_WPCA512.pth.tar", "Mapillary, K=16, 512-d"),
        _official("mapillary_WPCA128.pth.tar", "Mapillary, K=16, 128-d"),
    ),
    # the paper's own model (its MATLAB release), which none of these files holds: never set beside a run
    figures=reported(
        "paper Table 1, quoted in Nanne/pytorch-NetVlad README",
        None,
        (*PITTS30K, 84.1, 94.6),
        secondhand=True,
        variant="the paper's model (MATLAB release), not these files",
    ),
    preprocess="resize-first",  # PIL Resize((480, 640)) → ToTensor → Normalize(ImageNet)
    interpolation="bilinear",
    mark="WPCA.0.weight",
)


@dataclass(frozen=True)
class NetVLADVGG16Options:
    clusters: int = option(
        64, "NetVLAD clusters K (an official file decides it: 64 Pittsburgh, 16 Mapillary)"
    )
    whitened_dim: int = option(4096, "WPCA output size D (an official file decides it: 4096, 512 or 128)")

    def __post_init__(self):
        if self.clusters < 1 or self.whitened_dim < 1:
            raise ValueError("clusters and whitened_dim must be ≥ 1")


class NetVLADVGG16(nn.Module):
    """(B, 3, H, W) → (B, D) L2-normalised: VGG16 conv5_3 → NetVLAD (K·512) → WPCA (D) → L2."""

    def __init__(self, encoder: nn.Module, clusters: int, whitened_dim: int):
        super().__init__()
        self.encoder = encoder
        # vlad v1: assignment without bias on L2-normalised features, as Patch-NetVLAD's configs build it
        self.pool = NetVLAD(clusters, VGG16_CHANNELS, normalize_input=True, assign_bias=False)
        self.whitening = nn.Linear(self.pool.output_dim, whitened_dim)  # the 1×1 WPCA conv on a 1×1 map
        self.norm = L2Norm()
        self.descriptor_dim = whitened_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.encoder(images)  # (B, 512, H/16, W/16)
        return self.norm(self.whitening(self.pool(features)))


def convert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """Patch-NetVLAD's state dict → ours, and the K and D it holds. Keys this map does not know (say
    ``pool.conv.bias`` of a vladv2 file) pass through, so loading names them as unexpected."""
    renamed = {
        "pool.conv.weight": ("pool.assign.weight", lambda w: w.flatten(1)),  # (K, 512, 1, 1) → (K, 512)
        "WPCA.0.weight": ("whitening.weight", lambda w: w.flatten(1)),  # (D, K·512, 1, 1) → (D, K·512)
        "WPCA.0.bias": ("whitening.bias", lambda b: b),
    }
    options = {
        "clusters": int(state["pool.centroids"].shape[0]),
        "whitened_dim": int(state["WPCA.0.bias"].shape[0]),
    }
    # encoder.N.* (timm's vgg16.features has the same indices) and pool.centroids keep their names
    ours = {key: value for key, value in state.items() if key not in renamed}
    for theirs, (name, reshape) in renamed.items():
        ours[name] = reshape(state[theirs])  # KeyError for a file without it: read_official names the key
    return ours, options


@register_published(
    "netvlad-vgg16",
    "VGG16 conv5_3 + NetVLAD + WPCA-4096 (Patch-NetVLAD's Pittsburgh/Mapillary checkpoints)",
    PUBLISHED,
    NetVLADVGG16Options,
    convert,
)
def netvlad_vgg16(cfg: ModelConfig, options: NetVLADVGG16Options) -> NetVLADVGG16:
    vgg, weights = create_timm_model("vgg16", cfg.pretrained, cfg.pretrained_file)  # torchvision's weights
    model = NetVLADVGG16(vgg.features[:CONV5_3_END], options.clusters, options.whitened_dim)
    model.backbone_facts = {"weights": weights, **normalisation(vgg)}
    return model
