"""``netvlad``: timm backbone (conv features) + NetVLAD + optional PCA-whitening.

Centroids are initialised by faiss k-means on local features sampled from the training database
(``initialise``, called by the runner before training and for ``--untrained`` evaluation). With
``--pca-dim D`` the descriptor is PCA-whitened to D dimensions (``finalise``, called after training on
the best weights, and for ``--untrained`` evaluation): as in NetVLAD, training and mining see the
un-whitened VLAD descriptor, and the whitening is fitted on the trained model's descriptors.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from vpr_bench.config import ModelConfig
from vpr_bench.datasets.images import ImageList, model_transform
from vpr_bench.layers import NetVLAD
from vpr_bench.methods.backbones import create_backbone
from vpr_bench.registry import register_method


class NetVLADNet(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        channels: int,
        clusters: int,
        pca_dim: int | None = None,
        sharpness: float = 100.0,
    ):
        super().__init__()
        self.sharpness = sharpness
        self.backbone = backbone
        self.pool = NetVLAD(clusters, channels)
        self.pca_dim = pca_dim
        if pca_dim:
            self.whiten = nn.Linear(self.pool.output_dim, pca_dim)
            self.register_buffer("whitening_fitted", torch.tensor(False))

    @property
    def descriptor_dim(self) -> int:
        """The VLAD size, or ``pca_dim`` once the whitening is fitted."""
        whitened = self.pca_dim and bool(self.whitening_fitted)
        return self.pca_dim if whitened else self.pool.output_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        vlad = self.pool(self.backbone(images)[-1])
        if self.pca_dim and bool(self.whitening_fitted):
            return F.normalize(self.whiten(vlad), dim=1)
        return vlad

    def _local_features(self, paths, cfg, device, per_image: int, max_images: int) -> np.ndarray:
        rng = np.random.default_rng(cfg.seed)
        picks = rng.choice(len(paths), size=min(max_images, len(paths)), replace=False)
        transform = model_transform(self, cfg.data.image_size, cfg.data.preprocess)
        loader = DataLoader(
            ImageList([paths[i] for i in picks], transform),
            batch_size=cfg.eval.batch_size,
            num_workers=cfg.eval.num_workers,
        )
        chunks = []
        self.eval().to(device)
        with torch.inference_mode():
            for images, _ in loader:
                maps = self.backbone(images.to(device))[-1]  # (B, C, h, w)
                local = maps.flatten(2).transpose(1, 2).cpu().numpy()  # (B, h·w, C)
                take = rng.choice(local.shape[1], size=min(per_image, local.shape[1]), replace=False)
                chunks.append(local[:, take].reshape(-1, local.shape[2]))
        return np.concatenate(chunks)

    def initialise(self, database_paths, cfg, device, per_image: int = 50, max_images: int = 500) -> None:
        """k-means centroids from the training database."""
        features = self._local_features(database_paths, cfg, device, per_image, max_images)
        self.pool.init_from_features(features, seed=cfg.seed, sharpness=self.sharpness)

    def finalise(self, database_paths, cfg, device, max_images: int = 5000) -> None:
        """PCA-whitening (faiss ``PCAMatrix``, eigen power −½) fitted on training-database descriptors;
        nothing without ``pca_dim``."""
        if not self.pca_dim:
            return
        import faiss

        from vpr_bench.evaluation.descriptors import extract

        rng = np.random.default_rng(cfg.seed)
        picks = rng.choice(len(database_paths), size=min(max_images, len(database_paths)), replace=False)
        self.whitening_fitted.fill_(False)
        transform = model_transform(self, cfg.data.image_size, cfg.data.preprocess)
        vlad, _ = extract(
            self,
            [database_paths[i] for i in picks],
            transform,
            device,
            cfg.eval.batch_size,
            cfg.eval.num_workers,
            desc="whitening",
            quiet=cfg.quiet,
        )
        if len(vlad) <= self.pca_dim:
            raise ValueError(f"--pca-dim {self.pca_dim} needs more than {self.pca_dim} training images")
        pca = faiss.PCAMatrix(vlad.shape[1], self.pca_dim, -0.5)
        pca.train(np.ascontiguousarray(vlad))
        matrix = faiss.vector_to_array(pca.A).reshape(pca.d_out, pca.d_in)  # y = A x + b
        bias = faiss.vector_to_array(pca.b)
        with torch.no_grad():
            self.whiten.weight.copy_(torch.from_numpy(matrix))
            self.whiten.bias.copy_(torch.from_numpy(bias))
            self.whitening_fitted.fill_(True)


@register_method("netvlad", "timm backbone + NetVLAD (k-means initialised) + optional PCA-whitening")
def netvlad(cfg: ModelConfig) -> NetVLADNet:
    backbone, facts = create_backbone(cfg.backbone, cfg.pretrained, cfg.pretrained_file, cfg.backbone_stage)
    model = NetVLADNet(
        backbone,
        facts["channels"],
        int(cfg.options.get("clusters", 64)),
        cfg.options.get("pca_dim"),
        float(cfg.options.get("sharpness", 100.0)),
    )
    model.backbone_facts = facts
    return model
