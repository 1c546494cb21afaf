"""What is fitted to data rather than learned, and when: for a ``FittedFromData`` model (NetVLAD),
k-means centroids from local features of the training database before training, PCA-whitening of its
descriptors after training on the best weights. Both are part of building the architecture, not of
training: an ``--untrained`` model gets both."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from vpr_bench.config import RunConfig
from vpr_bench.datasets.images import ImageList, data_transform
from vpr_bench.errors import ConfigError
from vpr_bench.evaluation.descriptors import extract
from vpr_bench.methods.base import FittedFromData

log = logging.getLogger(__name__)


def fits_from_data(model: nn.Module) -> bool:
    """A ``FittedFromData`` model, unless it says it is not fitted in this configuration."""
    return isinstance(model, FittedFromData) and getattr(model, "fitted_from_data", True)


def initialise(
    model: nn.Module,
    database_paths: Sequence[str | Path],
    cfg: RunConfig,
    device: torch.device,
    per_image: int = 50,
    max_images: int = 500,
) -> None:
    """Centroids from ``per_image`` local features of up to ``max_images`` training-database images."""
    rng = np.random.default_rng(cfg.seed)
    picks = rng.choice(len(database_paths), size=min(max_images, len(database_paths)), replace=False)
    transform = data_transform(model, cfg.data)
    loader = DataLoader(
        ImageList([database_paths[i] for i in picks], transform),
        batch_size=cfg.eval.batch_size,
        num_workers=cfg.eval.num_workers,
    )
    chunks: dict[str, list[np.ndarray]] = {}
    model.eval().to(device)
    with torch.inference_mode():
        for images, _ in loader:
            local = model.local_features(images.to(device))  # (B, N, C), or {part: (B, N, C)}
            for name, part in (local if isinstance(local, dict) else {"": local}).items():
                part = part.cpu().numpy()
                take = rng.choice(part.shape[1], size=min(per_image, part.shape[1]), replace=False)
                chunks.setdefault(name, []).append(part[:, take].reshape(-1, part.shape[2]))
    features = {name: np.concatenate(parts) for name, parts in chunks.items()}
    model.init_from_features(features if set(features) != {""} else features[""], seed=cfg.seed)


def check_whitening(model: nn.Module, database_images: int, max_images: int = 5000) -> int:
    """Fail early (before any training) when the whitening cannot be fitted; the images it will use."""
    dim = model.whitening_dim if fits_from_data(model) else None
    usable = min(max_images, database_images)
    if dim:
        vlad_dim = model.unwhitened_dim
        if dim > vlad_dim or dim >= usable:
            raise ConfigError(
                f"--model-option pca_dim={dim}: the whitening needs at most the descriptor size ({vlad_dim}) "
                "and fewer "
                f"dimensions than training-database images ({usable} used); choose a smaller pca_dim"
            )
    return usable


def finalise(
    model: nn.Module,
    database_paths: Sequence[str | Path],
    cfg: RunConfig,
    device: torch.device,
    max_images: int = 5000,
) -> None:
    """PCA-whitening (faiss ``PCAMatrix``, eigenvalue power −½) of the model's descriptors of up to
    ``max_images`` training-database images; nothing when the model does not whiten."""
    dim = model.whitening_dim
    if not dim:
        return
    import faiss

    model.set_whitening(None, None)  # fit on the un-whitened descriptor
    usable = check_whitening(model, len(database_paths), max_images)
    rng = np.random.default_rng(cfg.seed)
    picks = rng.choice(len(database_paths), size=usable, replace=False)
    transform = data_transform(model, cfg.data)
    descriptors, _ = extract(
        model,
        [database_paths[i] for i in picks],
        transform,
        device,
        cfg.eval.batch_size,
        cfg.eval.num_workers,
        desc="whitening",
        quiet=cfg.quiet,
    )
    pca = faiss.PCAMatrix(descriptors.shape[1], dim, -0.5)
    pca.train(np.ascontiguousarray(descriptors))
    matrix = faiss.vector_to_array(pca.A).reshape(pca.d_out, pca.d_in)  # y = A x + b
    model.set_whitening(matrix, faiss.vector_to_array(pca.b))
