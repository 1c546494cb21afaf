"""One evaluation's extraction shared over the ranks of a torchrun job: each rank describes a contiguous
run of whole batches of the images — the very batches one process forms, so a batch-dependent model
(a cross-image encoder) describes every image as it would alone — and rank 0 receives the other ranks'
rows into the full array (a memory map where asked), then searches and scores alone. Alone, a plain
``extract``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vpr_bench import distributed
from vpr_bench.evaluation.descriptors import extract


def shard_rows(count: int, batch_size: int, world: int) -> list[range]:
    """Each rank's rows of ``count`` images: consecutive whole batches of ``batch_size`` (the last one
    partial), the first ranks taking one batch more where they do not divide evenly; rank 0's is never
    empty."""
    batches = -(-count // batch_size)
    ends = [int(n) * batch_size for n in np.cumsum([len(p) for p in np.array_split(range(batches), world)])]
    return [range(min(a, count), min(b, count)) for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def share_weights(*models: nn.Module | None) -> None:
    """Rank 0's weights in each model on every rank, so that every shard is described by one model."""
    for model in dict.fromkeys(m for m in models if m is not None):
        distributed.share_weights(model)


def extract_for_main(
    model: nn.Module,
    paths: Sequence,
    transform,
    device: torch.device,
    batch_size: int = 32,
    out_file: str | Path | None = None,
    dtype=np.float32,
    **options,
) -> tuple[np.ndarray | None, list[float]]:
    """``extract`` over the ranks: on rank 0 the (len(paths), D) descriptors of all ``paths`` in order (a
    ``np.memmap`` at ``out_file`` where given; an array, never a device tensor, with more than one rank)
    and its own batches' ms/image; on another rank None and its batches' ms/image, its rows sent to rank
    0. Every rank must call it, in the same order."""
    world, rank = distributed.world_size(), distributed.rank()
    common = dict(transform=transform, device=device, batch_size=batch_size, dtype=dtype, **options)
    if world == 1:
        return extract(model, paths, out_file=out_file, **common)
    common.pop("keep_on_device", None)  # rows travel to rank 0 as arrays
    shards = shard_rows(len(paths), batch_size, world)
    mine = shards[rank]
    shard, batch_ms = extract(model, list(paths)[mine.start : mine.stop], **common) if mine else (None, [])
    if rank != 0:
        if mine:
            distributed.send_rows(shard)
        return None, batch_ms
    shape = (len(paths), shard.shape[1])
    full = (
        np.lib.format.open_memmap(out_file, mode="w+", dtype=dtype, shape=shape)
        if out_file
        else np.empty(shape, dtype=dtype)
    )
    full[mine.start : mine.stop] = shard
    del shard
    for source, rows in enumerate(shards[1:], start=1):
        if rows:
            distributed.receive_rows(full[rows.start : rows.stop], source)
    if isinstance(full, np.memmap):
        full.flush()
    return full, batch_ms
