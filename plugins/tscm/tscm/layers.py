"""TSCM's own layers: NetVLADLoupe aggregation and the inter-transformer (cross-attention) encoder.

TSCM: "Teacher-Student Model with Cross-Metric Knowledge Distillation for Visual Place Recognition"
(Shen et al., ICRA 2024, arXiv 2404.01587), Sec. III-A/B.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vpr_bench.api import NetVLAD


class ContextGating(nn.Module):
    """y = x ⊙ σ(W x + b) (Miech et al., "Learnable pooling with Context Gating", 2017), no batch norm."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.gate(x))


class NetVLADLoupe(nn.Module):
    """NetVLAD (soft-assignment with a bias, intra + L2 norm) → linear projection to ``output_dim`` →
    context gating.

    Works on (B, N, C) tokens or (B, C, H, W) maps (read as H·W tokens of C channels); N is read from the
    input, never fixed. The soft assignment is ``x·w_k + b_k`` in both variants: the TSCM release computes
    ``x @ cluster_weights + cluster_biases`` (no batch norm, so the bias is live), and the NetVLAD paper's
    eq. 3 has the bias too.

    ``release_dim``: the TSCM release's reinterpretation, kept as an option because the paper's parameter
    counts (teacher 125.0 M, student 12.7 M) and the authors' checkpoints come from it. The release cuts
    the token-major (tokens × channels) matrix into consecutive samples of ``release_dim`` values: a
    1024-d fused token becomes two 512-d samples, and the student's 196 patch tokens × 768 channels become
    768 samples of 196 values (runs of three and a bit tokens, not per-channel maps). The default (None)
    aggregates real tokens: N samples of C channels.
    """

    def __init__(
        self,
        dim: int,
        output_dim: int,
        clusters: int = 64,
        gating: bool = True,
        release_dim: int | None = None,
    ):
        super().__init__()
        self.release_dim = release_dim
        self.vlad = NetVLAD(clusters, release_dim or dim, normalize_input=False, assign_bias=True)
        self.project = nn.Linear(self.vlad.output_dim, output_dim, bias=False)
        self.gating = ContextGating(output_dim) if gating else nn.Identity()
        self.output_dim = output_dim

    def samples(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, N, C) samples the NetVLAD aggregates (what its centroids live among)."""
        if x.dim() == 4:
            x = x.flatten(2).transpose(1, 2)  # (B, H·W, C): token-major, as the release's patch tokens
        if self.release_dim:
            x = x.reshape(x.shape[0], -1, self.release_dim)  # (B, N·C / release_dim, release_dim)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gating(self.project(self.vlad(self.samples(x))))


class CrossAttentionBlock(nn.Module):
    """``out = x + MHA(q=x, k=context, v=context)``; ``out = out + FFN(out)``.

    Paper Fig. 2; the release's ``Shen`` module.
    """

    def __init__(self, dim: int = 512, heads: int = 4, hidden: int = 1024, dropout: float = 0.1):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(x, context, context, need_weights=False)[0]
        return x + self.ffn(x)


class InterTransformerEncoder(nn.Module):
    """Fuses ViT tokens V and ResNet tokens R (both (B, N, d)) with cross-attention each way.

    Returns ``[[fuse_V; fuse_R] ‖ [V; R]]``: the two fused sequences stacked along the token axis,
    channel-concatenated with the un-fused tokens → (B, N_V + N_R, 2d).
    """

    def __init__(self, dim: int = 512, heads: int = 4, hidden: int = 1024, dropout: float = 0.1):
        super().__init__()
        self.vit_from_resnet = CrossAttentionBlock(dim, heads, hidden, dropout)
        self.resnet_from_vit = CrossAttentionBlock(dim, heads, hidden, dropout)

    def forward(self, vit_tokens: torch.Tensor, resnet_tokens: torch.Tensor) -> torch.Tensor:
        fused = torch.cat(
            [
                self.vit_from_resnet(vit_tokens, resnet_tokens),
                self.resnet_from_vit(resnet_tokens, vit_tokens),
            ],
            dim=1,
        )
        return torch.cat([fused, torch.cat([vit_tokens, resnet_tokens], dim=1)], dim=2)


def l2n(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)
