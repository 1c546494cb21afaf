"""Multi-process training under ``torchrun`` (PyTorch DistributedDataParallel), and no-ops without it.

``torchrun --nproc_per_node=N -m vpr_bench run ...`` starts N copies of the command; ``init`` joins them
into one process group (NCCL on GPUs, gloo on CPU). Then: rank 0 creates the run folder and tells the
others; every rank extracts its shard of the descriptor cache and the shards are gathered; rank 0 mines
and broadcasts the tuples; each rank trains on its share of every batch, DDP averaging the gradients;
rank 0 alone writes checkpoints, logs and the record. One process without ``torchrun`` is world size 1.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init(device: str = "auto") -> None:
    """Join the ``torchrun`` process group when there is one (``WORLD_SIZE`` > 1); idempotent."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo")


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_shards(shard: np.ndarray, total: int) -> np.ndarray:
    """Rows ``rank::world`` from every rank → the full (total, ...) array, in order, on every rank."""
    world = world_size()
    if world == 1:
        return shard
    pieces: list = [None] * world
    dist.all_gather_object(pieces, shard)
    full = np.empty((total, *shard.shape[1:]), dtype=shard.dtype)
    for r, piece in enumerate(pieces):
        full[r::world] = piece
    return full


def all_sum(value: float) -> float:
    if world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return float(tensor.item())
