"""Generalised-mean pooling (Radenović et al., TPAMI 2019) and L2 normalisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GeM(nn.Module):
    """(B, C, H, W) → (B, C): (mean x^p)^(1/p) with a learnable p (3 at start, as in the paper)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = True):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learnable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # avg_pool2d over the whole map, as cirtorch's gem: adaptive_avg_pool2d sums in another order, and
        # with a small p the 1/p power amplifies that rounding (TSCM release fixture: 4e-4 vs 0)
        pooled = F.avg_pool2d(x.clamp(min=self.eps).pow(self.p), (x.shape[-2], x.shape[-1]))
        return pooled.pow(1.0 / self.p).flatten(1)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.3f}, eps={self.eps}"


class L2Norm(nn.Module):
    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2.0, dim=self.dim)
