"""TSCM teacher and student (Shen et al., ICRA 2024, arXiv 2404.01587, Sec. III-A, Fig. 2), timm-backed.

Every width and token count comes from the backbones and the image size; the paper's sizes are the
``paper`` preset's options (ResNet-50 cut after layer3, ViT-B/16, width 512, 64 clusters, 2048-d).

Descriptor layout, D = ``descriptor_dim`` and C = the ResNet map's channels (paper: D 2048, C 1024):
- teacher: [NetVLAD(ResNet tokens) (D−C)/4 ‖ NetVLAD(fused tokens) (D−C)/2 ‖ NetVLAD(ViT tokens) (D−C)/4
  ‖ GeM(ResNet map) C], L2-normalised;
- student: [Linear(NetVLAD(patch tokens) (D−C)/4 → D−C) ‖ GeM(ResNet map) C], L2-normalised —
  the same size as the teacher's, so teacher and student distances live in one space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tscm.layers import InterTransformerEncoder, NetVLADLoupe, l2n
from vpr_bench.api import ConfigError, GeM, ModelConfig, create_backbone, create_timm_model, option

TEACHER_PARTS = ("resnet_vlad", "fused_vlad", "vit_vlad", "gem")


@dataclass(frozen=True)
class TSCMOptions:
    """``--model-option key=value`` of the tscm methods (teacher, student and the pipeline share them)."""

    vit: str = option("vit_base_patch16_224", "timm ViT of the teacher's second branch")
    width: int = option(512, "common token width of the two teacher branches")
    heads: int = option(4, "attention heads of the inter-transformer encoder")
    clusters: int = option(64, "NetVLADLoupe clusters")
    dropout: float = option(0.1, "dropout of the inter-transformer encoder")
    patch_dim: int = option(768, "student patch-embedding width")
    patch_size: int = option(16, "student patch size (pixels)")
    vit_variant: str = option(
        "timm",
        "timm: forward_features (class token, position embedding, final norm); release: the release's "
        "Sequential(children[:-1]) (no class token or position embedding, final norm applied)",
        variant=True,
    )
    release_reshape: bool = option(
        False, "NetVLADLoupe reads the release's token-major sample chunks", variant=True
    )
    vit_pretrained: bool | None = option(
        None, "ViT ImageNet weights; none: as --pretrained (release: false)", variant=True
    )
    vit_patch_size: int | None = option(None, "ViT patch size; none: the ViT's own (timm resamples weights)")
    balance_parts: bool = option(
        False,
        "L2-normalise each descriptor part and weight it by √(its share of the dimensions) before the "
        "concatenation (the release concatenates raw parts: at init GeM holds ≈ 99 % of the norm)",
        variant=True,
    )
    loupe_init: str = option(
        "random",
        "random: the NetVLADLoupe heads start from random weights (paper, release); kmeans: each head's "
        "centroids and assignment from k-means on its own tokens of the training database, as netvlad",
        choices=("random", "kmeans"),
        variant=True,
    )
    loupe_sharpness: float = option(
        3.0,
        "loupe_init=kmeans: a token's nearest centroid starts this many times as likely as its second "
        "(netvlad's demo value)",
        above=1,
    )
    parts: str = option(
        "resnet_vlad,fused_vlad,vit_vlad,gem",
        "teacher descriptor parts kept, for ablations (e.g. gem: the ResNet+GeM branch alone); a "
        "branch no kept part needs is not computed. Fewer parts: a shorter descriptor (no student)",
        variant=True,
    )

    def __post_init__(self):
        kept = [p.strip() for p in self.parts.split(",") if p.strip()]
        if not kept or set(kept) - set(TEACHER_PARTS) or len(set(kept)) != len(kept):
            raise ValueError(
                f"--model-option parts={self.parts!r}: distinct names among {', '.join(TEACHER_PARTS)}"
            )
        if self.vit_variant not in ("timm", "release"):
            raise ValueError("--model-option vit_variant must be timm or release")
        if min(self.width, self.heads, self.clusters, self.patch_dim, self.patch_size) < 1:
            raise ValueError("width, heads, clusters, patch_dim and patch_size must be ≥ 1")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be a multiple of heads {self.heads}")


def combine(parts: list[torch.Tensor], balance: bool) -> torch.Tensor:
    """The L2-normalised concatenation of descriptor parts; ``balance``: each part first L2-normalised
    and weighted by √(d_part / D), so that every part holds its share of the norm whatever its scale."""
    if balance:
        total = sum(p.shape[1] for p in parts)
        parts = [l2n(p) * (p.shape[1] / total) ** 0.5 for p in parts]
    return l2n(torch.cat(parts, dim=1))


def _split_sizes(descriptor_dim: int | None, channels: int) -> int:
    """(D − C): what the VLAD parts share beside the C-d GeM part; checked to split into quarters."""
    rest = (descriptor_dim or 2 * channels) - channels
    if rest <= 0 or rest % 4:
        raise ConfigError(
            f"--descriptor-dim {descriptor_dim} must exceed the ResNet map's {channels} channels by a "
            "positive multiple of 4"
        )
    return rest


class _ResNetBranch(nn.Module):
    """ResNet cut after a stage: (B, 3, H, W) → (B, C, h, w), with GeM of it."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        stage = 3 if cfg.backbone_stage is None else cfg.backbone_stage
        self.body, self.facts = create_backbone(cfg.backbone, cfg.pretrained, cfg.pretrained_file, stage)
        self.channels = self.facts["channels"]
        self.gem = GeM()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature_map = self.body(images)[-1]  # (B, C, h, w)
        return feature_map, self.gem(feature_map)


class TeacherNet(nn.Module):
    """ResNet + ViT branches, inter-transformer fusion, three NetVLADLoupe heads and GeM (paper Fig. 2)."""

    def __init__(self, cfg: ModelConfig, options: TSCMOptions):
        super().__init__()
        o = self.options = options
        self.resnet = _ResNetBranch(cfg)
        vit_pretrained = cfg.pretrained if o.vit_pretrained is None else o.vit_pretrained
        # global_pool "" keeps the final ``norm`` in forward_features ("avg" would move it to fc_norm,
        # which forward_features never applies)
        release = {"class_token": False, "pos_embed": "none", "global_pool": ""}
        self.vit, self.vit_weights = create_timm_model(
            o.vit,
            vit_pretrained,
            None,
            num_classes=0,
            dynamic_img_size=True,
            **({"patch_size": o.vit_patch_size} if o.vit_patch_size else {}),
            **(release if o.vit_variant == "release" else {}),
        )
        c = self.resnet.channels
        rest = _split_sizes(cfg.descriptor_dim, c)
        self.resnet_proj = nn.Linear(c, o.width)
        self.vit_proj = nn.Linear(self.vit.embed_dim, o.width)
        self.encoder = InterTransformerEncoder(o.width, o.heads, 2 * o.width, o.dropout)
        half = o.width // 2 if o.release_reshape else None
        self.resnet_vlad = NetVLADLoupe(o.width, rest // 4, o.clusters, release_dim=half)
        self.fused_vlad = NetVLADLoupe(
            2 * o.width, rest // 2, o.clusters, release_dim=o.width if o.release_reshape else None
        )
        self.vit_vlad = NetVLADLoupe(o.width, rest // 4, o.clusters, release_dim=half)
        self.parts = [p.strip() for p in o.parts.split(",") if p.strip()]
        sizes = {"resnet_vlad": rest // 4, "fused_vlad": rest // 2, "vit_vlad": rest // 4, "gem": c}
        self.descriptor_dim = sum(sizes[p] for p in self.parts)
        self.backbone_facts = {**self.resnet.facts, "vit_weights": self.vit_weights, "vit_model": o.vit}

    def vit_tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(images)[:, self.vit.num_prefix_tokens :]  # (B, N_V, C_V)

    def head_inputs(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The tokens each kept NetVLADLoupe head reads, and the ResNet's GeM."""
        feature_map, resnet_gem = self.resnet(images)
        needs, inputs = set(self.parts), {}
        if needs & {"resnet_vlad", "fused_vlad"}:
            resnet_tokens = self.resnet_proj(feature_map.flatten(2).transpose(1, 2))  # (B, N_R, width)
        if needs & {"vit_vlad", "fused_vlad"}:
            vit_tokens = self.vit_proj(self.vit_tokens(images))  # (B, N_V, width)
        if "resnet_vlad" in needs:
            inputs["resnet_vlad"] = resnet_tokens
        if "fused_vlad" in needs:
            inputs["fused_vlad"] = self.encoder(vit_tokens, resnet_tokens)  # (B, N, 2·width)
        if "vit_vlad" in needs:
            inputs["vit_vlad"] = vit_tokens
        return inputs, resnet_gem

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # the heads run after all their inputs: the same computation as before 2026-12-07 (the release's
        # outputs, to float rounding), but the backward sums gradients in another order, so a from-scratch
        # training run's figures differ from those of the earlier order by float rounding amplified
        inputs, resnet_gem = self.head_inputs(images)
        out = {"gem": resnet_gem, **{name: getattr(self, name)(x) for name, x in inputs.items()}}
        return combine([out[p] for p in self.parts], self.options.balance_parts)

    # ---- FittedFromData (vpr_bench.api), with ``loupe_init=kmeans`` only ----------------------------
    @property
    def fitted_from_data(self) -> bool:
        return self.options.loupe_init == "kmeans"

    def local_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each kept head's (B, N, C) samples, as its NetVLAD sees them."""
        inputs, _ = self.head_inputs(images)
        return {name: getattr(self, name).samples(x) for name, x in inputs.items()}

    def init_from_features(self, features: dict[str, np.ndarray], seed: int) -> None:
        for name, sampled in features.items():
            getattr(self, name).vlad.init_from_features(sampled, seed, sharpness=self.options.loupe_sharpness)

    whitening_dim = None  # no PCA-whitening

    @property
    def unwhitened_dim(self) -> int:
        return self.descriptor_dim

    def set_whitening(self, matrix, bias) -> None:
        if matrix is not None:
            raise ValueError("the TSCM teacher has no whitening")


class StudentNet(nn.Module):
    """ResNet + GeM and a patch-embedding NetVLAD branch projected up (paper Sec. III-B)."""

    def __init__(self, cfg: ModelConfig, options: TSCMOptions):
        super().__init__()
        o = self.options = options
        self.resnet = _ResNetBranch(cfg)
        c = self.resnet.channels
        rest = _split_sizes(cfg.descriptor_dim, c)
        self.patch_embed = nn.Conv2d(3, o.patch_dim, o.patch_size, stride=o.patch_size)
        release_dim = None
        if o.release_reshape:  # the release's 768 "samples" of 196 values (needs the paper's 224×224)
            release_dim = (224 // o.patch_size) ** 2
        self.patch_vlad = NetVLADLoupe(o.patch_dim, rest // 4, o.clusters, release_dim=release_dim)
        self.patch_proj = nn.Linear(rest // 4, rest)
        self.descriptor_dim = rest + c
        self.backbone_facts = self.resnet.facts

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feature_map, resnet_gem = self.resnet(images)
        patches = self.patch_embed(images)  # (B, patch_dim, H/16, W/16)
        return combine([self.patch_proj(self.patch_vlad(patches)), resnet_gem], self.options.balance_parts)
