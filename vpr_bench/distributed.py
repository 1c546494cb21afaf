"""Multi-process training and evaluation under ``torchrun`` (PyTorch DistributedDataParallel), and
no-ops without it.

``torchrun --nproc_per_node=N -m vpr_bench run ...`` starts N copies of the command; ``init`` joins them
into one process group (NCCL on GPUs, gloo on CPU). Then: rank 0 creates the run folder and tells the
others; every rank extracts its shard of the descriptor cache and the shards are gathered; rank 0 mines
and broadcasts the tuples; each rank trains on its share of every batch, DDP averaging the gradients;
rank 0 alone writes checkpoints, logs and the record. ``vpr-bench eval`` and each epoch's validation
split their extraction too: every rank describes its share of the images, rank 0 receives the rows
(``send_rows`` / ``receive_rows``), searches and scores. One process without ``torchrun`` is world
size 1.
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


def share_weights(model: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers in ``model`` on every rank: what one rank fitted from data (k-means
    centroids, whitening) or updated alone (BatchNorm statistics under DDP) may differ on another."""
    if world_size() == 1:
        return
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()} if is_main() else None
    state = broadcast(state)
    if not is_main():
        model.load_state_dict(state)


MESSAGE_BYTES = 1 << 26  # rows travel in messages of at most 64 MiB: a large shard is never copied whole


def _wire() -> torch.device:
    """Where point-to-point tensors live: NCCL sends GPU memory, gloo host memory."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _rows_per_message(array: np.ndarray) -> int:
    return max(1, MESSAGE_BYTES // max(1, array.shape[1] * array.dtype.itemsize))


def send_rows(rows: np.ndarray, dst: int = 0) -> None:
    """``rows`` (N, D) to rank ``dst``, which takes them with ``receive_rows``: their shape, then their
    bytes in messages of at most ``MESSAGE_BYTES``."""
    wire = _wire()
    dist.send(torch.tensor(rows.shape, dtype=torch.int64, device=wire), dst=dst)
    step = _rows_per_message(rows)
    for start in range(0, len(rows), step):
        chunk = np.ascontiguousarray(rows[start : start + step]).reshape(-1).view(np.uint8)
        dist.send(torch.from_numpy(chunk).to(wire), dst=dst)


def receive_rows(out: np.ndarray, src: int) -> None:
    """``out`` (N, D) filled in place (a slice of a memory map, say) with the rows rank ``src`` sends."""
    wire = _wire()
    shape = torch.empty(2, dtype=torch.int64, device=wire)
    dist.recv(shape, src=src)
    if tuple(shape.tolist()) != out.shape:
        sent = tuple(shape.tolist())
        raise RuntimeError(f"rank {src} sends rows of shape {sent}, rank {rank()} expects {out.shape}")
    step = _rows_per_message(out)
    for start in range(0, len(out), step):
        part = out[start : start + step]
        buffer = torch.empty(part.size * part.dtype.itemsize, dtype=torch.uint8, device=wire)
        dist.recv(buffer, src=src)
        part[...] = buffer.cpu().numpy().view(part.dtype).reshape(part.shape)
