"""NetVLAD aggregation (Arandjelović et al., "NetVLAD: CNN architecture for weakly supervised place
recognition", CVPR 2016, eq. 4): soft-assignment of local features to K centroids, summed residuals,
intra-normalisation, then L2 normalisation.
"""

from __future__ import annotations

import math

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class NetVLAD(nn.Module):
    """(B, N, C) tokens or (B, C, H, W) maps → (B, K·C), L2-normalised."""

    def __init__(
        self, clusters: int = 64, dim: int = 512, normalize_input: bool = True, assign_bias: bool = False
    ):
        super().__init__()
        self.clusters, self.dim, self.normalize_input = clusters, dim, normalize_input
        # soft-assignment scores w_k·x (+ b_k): the paper's eq. 3 has the bias; NetVLAD's own release
        # (vladv1, L2-normalised input) and Patch-NetVLAD drop it
        self.assign = nn.Linear(dim, clusters, bias=assign_bias)
        self.centroids = nn.Parameter(torch.randn(clusters, dim) / math.sqrt(dim))
        self.output_dim = clusters * dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.flatten(2).transpose(1, 2)  # (B, H·W, C)
        if self.normalize_input:
            x = F.normalize(x, dim=-1)
        soft = F.softmax(self.assign(x), dim=-1)  # (B, N, K)
        vlad = soft.transpose(1, 2) @ x - soft.sum(dim=1).unsqueeze(-1) * self.centroids  # (B, K, C)
        vlad = F.normalize(vlad, dim=-1)  # intra-normalisation
        return F.normalize(vlad.flatten(1), dim=-1)

    @torch.no_grad()
    def init_from_features(
        self,
        features: np.ndarray,
        seed: int = 0,
        iterations: int = 25,
        redo: int = 3,
        sharpness: float = 100.0,
    ) -> None:
        """Centroids by faiss k-means on sampled local features; assignment sharp at the start.

        As in the NetVLAD release: weights = α · normalised centroid, with α chosen so that a feature's
        nearest centroid is on average ``sharpness`` times (release: 100) as likely as its second
        nearest (no bias). From-scratch training on random features learns better with a softer start
        (the demo preset uses 3): a near-hard assignment of features that are still changing passes
        almost no gradient to the assignment.
        """
        features = np.ascontiguousarray(features, dtype=np.float32)
        if self.normalize_input:
            features /= np.linalg.norm(features, axis=1, keepdims=True) + 1e-12
        if len(features) < self.clusters:
            raise ValueError(f"k-means needs ≥ {self.clusters} local features, got {len(features)}")
        kmeans = faiss.Kmeans(self.dim, self.clusters, niter=iterations, nredo=redo, seed=seed, verbose=False)
        kmeans.train(features)
        centroids = kmeans.centroids
        unit = centroids / (np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12)
        top2 = -np.sort(-(features @ unit.T), axis=1)[:, :2]
        alpha = float(np.log(sharpness) / max(np.mean(top2[:, 0] - top2[:, 1]), 1e-6))
        self.centroids.copy_(torch.from_numpy(centroids))
        self.assign.weight.copy_(torch.from_numpy(alpha * unit))
        if self.assign.bias is not None:
            self.assign.bias.zero_()

    def extra_repr(self) -> str:
        return f"clusters={self.clusters}, dim={self.dim}"
