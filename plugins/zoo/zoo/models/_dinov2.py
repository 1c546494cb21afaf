"""DINOv2 ViT/14 backbones (Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision",
TMLR 2024) as facebookresearch/dinov2 (commit b8931f7) runs them, built on timm's ``vit_*_patch14_dinov2``.

timm's modules and key names are the official ones (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.<i>.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}``, ``norm``); the official
state dict also holds ``mask_token``, which evaluation never uses. What differs is the token preparation,
so it is written here as the official code computes it:
- the 37×37 grid of ``pos_embed`` (trained at 518 px) is resized bicubically, without antialias, by the
  scale factor ``(rows + 0.1) / 37`` × ``(cols + 0.1) / 37`` (the dinov2 ``interpolate_offset``): torch
  then maps output pixels back with that factor, not with ``rows / 37`` as timm's resize to a size does;
  it is left as is when the grid is 37×37 and the image square;
- the patch grid is ``floor(H / 14)`` × ``floor(W / 14)`` (a strided convolution; timm would refuse other
  sizes).
Shared by BoQ (no final norm) and SALAD (final norm), see ``boq.py`` and ``salad.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vpr_bench.api import ConfigError, create_timm_model, normalisation

# the official torch.hub names, their timm model, and the embedding width that tells them apart in a file
TIMM_NAMES = {
    "dinov2_vits14": "vit_small_patch14_dinov2",
    "dinov2_vitb14": "vit_base_patch14_dinov2",
    "dinov2_vitl14": "vit_large_patch14_dinov2",
}
BY_WIDTH = {384: "dinov2_vits14", 768: "dinov2_vitb14", 1024: "dinov2_vitl14"}
INTERPOLATE_OFFSET = 0.1  # dinov2's ``interpolate_offset`` of its hub models


def interpolated_position_embedding(
    pos_embed: torch.Tensor, rows: int, cols: int, square_image: bool, offset: float = INTERPOLATE_OFFSET
) -> torch.Tensor:
    """(1, 1 + side², C) trained position embedding → (1, 1 + rows·cols, C) for a rows × cols grid."""
    class_position, grid_position = pos_embed[:, :1], pos_embed[:, 1:]
    side = math.isqrt(grid_position.shape[1])
    if rows == side and cols == side and square_image:
        return pos_embed
    channels = pos_embed.shape[-1]
    grid = grid_position.float().reshape(1, side, side, channels).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid, scale_factor=((rows + offset) / side, (cols + offset) / side), mode="bicubic", antialias=False
    )
    grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, channels)
    return torch.cat([class_position, grid.to(pos_embed.dtype)], dim=1)


class DinoV2(nn.Module):
    """Images (B, 3, H, W) → (class token (B, C), patch feature map (B, C, H // 14, W // 14))."""

    def __init__(self, vit: nn.Module, final_norm: bool):
        super().__init__()
        self.vit = vit  # timm VisionTransformer; its head, fc_norm and norm_pre are identities
        self.final_norm = final_norm
        self.channels: int = vit.embed_dim

    def tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Class token + patch tokens with their position embedding: (B, 1 + rows·cols, C), rows, cols."""
        patches = self.vit.patch_embed.proj(images)  # (B, C, rows, cols)
        rows, cols = patches.shape[-2:]
        patches = self.vit.patch_embed.norm(patches.flatten(2).transpose(1, 2))
        tokens = torch.cat([self.vit.cls_token.expand(len(images), -1, -1), patches], dim=1)
        square = images.shape[-2] == images.shape[-1]
        return tokens + interpolated_position_embedding(self.vit.pos_embed, rows, cols, square), rows, cols

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, rows, cols = self.tokens(images)
        tokens = self.vit.blocks(tokens)
        if self.final_norm:
            tokens = self.vit.norm(tokens)
        patches = tokens[:, 1:].transpose(1, 2)  # (B, C, rows·cols), row-major grid
        return tokens[:, 0], patches.reshape(len(images), self.channels, rows, cols)


def create_dinov2(
    name: str, pretrained: bool, pretrained_file: str | None, final_norm: bool
) -> tuple[DinoV2, dict]:
    """The DINOv2 backbone ``name`` (an official hub name, see ``TIMM_NAMES``; or any timm ViT with one
    class token and a square grid of position embeddings, run the same way) and its facts."""
    vit, weights = create_timm_model(TIMM_NAMES.get(name, name), pretrained, pretrained_file, num_classes=0)
    grid = vit.pos_embed.shape[1] - 1 if getattr(vit, "pos_embed", None) is not None else 0
    class_token = getattr(vit, "cls_token", None) is not None and not getattr(vit, "no_embed_class", False)
    single = class_token and getattr(vit, "num_reg_tokens", 0) == 0
    if name not in TIMM_NAMES and (not single or grid < 1 or math.isqrt(grid) ** 2 != grid):
        raise ConfigError(
            f"--backbone {name}: a ViT with one class token, no register tokens and a square grid of "
            "position embeddings (as DINOv2) is needed"
        )
    return DinoV2(vit, final_norm), {"weights": weights, "channels": vit.embed_dim, **normalisation(vit)}


def official_dinov2_state(state: dict, prefix: str, ours: str) -> tuple[dict, str]:
    """The official dinov2 entries under ``prefix`` (e.g. ``backbone.model.``) renamed under ``ours``
    (``mask_token`` dropped), and the hub name their width tells; KeyError when the file has none."""
    width = state[prefix + "cls_token"].shape[-1]
    if width not in BY_WIDTH:
        raise KeyError(f"{prefix}cls_token of width 384, 768 or 1024")
    renamed = {
        ours + key[len(prefix) :]: value
        for key, value in state.items()
        if key.startswith(prefix) and key != prefix + "mask_token"
    }
    return renamed, BY_WIDTH[width]
