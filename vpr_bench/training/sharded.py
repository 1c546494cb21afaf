"""Descriptor extraction shared over the ranks of a torchrun job: each rank extracts rows
``rank::world`` and every rank gets all rows back in order. Alone, a plain extraction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vpr_bench import distributed
from vpr_bench.config import RunConfig
from vpr_bench.datasets.workers import loader_workers
from vpr_bench.evaluation.descriptors import extract


def extract_sharded(
    model: nn.Module, paths: Sequence[str | Path], transform, cfg: RunConfig, device: torch.device, desc: str
) -> np.ndarray:
    """(len(paths), D) descriptors of ``paths``, in order, on every rank."""
    world, rank = distributed.world_size(), distributed.rank()
    mine = list(paths)[rank::world]
    common = dict(
        transform=transform,
        device=device,
        batch_size=cfg.eval.batch_size,
        num_workers=loader_workers(cfg.eval.num_workers, transform, mine, device),  # none once cached
        quiet=cfg.quiet,
        desc=desc,
    )
    if world == 1:
        return extract(model, paths, **common)[0]
    shard = extract(model, mine, **common)[0] if mine else None
    if shard is None:
        shard = np.zeros((0, getattr(model, "descriptor_dim", 0)), dtype=np.float32)
    return distributed.gather_shards(np.asarray(shard), len(paths))
