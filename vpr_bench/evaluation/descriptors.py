"""Descriptor extraction through a DataLoader into a (memory-mappable) float32 array, and the model's
ms/image from a separate timing pass."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from vpr_bench._io import WriteError, require_free_space, reserve
from vpr_bench.datasets.images import ImageList, collate_images, prepare_images, unwrap_worker_error
from vpr_bench.datasets.workers import loader_workers

CPU_TIMING_BATCH = 32  # a CPU's ms/image hardly changes past this; a larger batch only takes longer
MIN_TIMED_REPEATS = 3


def extract(
    model: nn.Module,
    paths: Sequence,
    transform,
    device: torch.device,
    batch_size: int = 32,
    num_workers: int = 2,
    out_file: str | Path | None = None,
    desc: str = "descriptors",
    quiet: bool = False,
    dtype=np.float32,
    keep_on_device: bool = False,
) -> tuple[np.ndarray | torch.Tensor, list[float]]:
    """L2-normalised descriptors (N, D) and the wall-clock ms/image of each batch's forward pass.

    With ``out_file`` the array is a read-only ``np.memmap`` of that file, so a large database is never
    held twice (nor resident: the search reads such a file block by block);
    ``dtype`` float16 halves it (the search index then stores float16 too). ``keep_on_device``: on a
    CUDA ``device``, a tensor there instead (``dtype``; no ``out_file``), for a search on that device
    that then uploads nothing — where it takes at most half the device's free memory; on a CPU, or where
    it would not fit, the array as without it. The batch timings run
    alongside image decoding and share the machine with it: progress figures, not a model's cost (that
    is ``time_forward``'s).
    """
    transform = prepare_images(paths, transform, device)  # through the image cache, if any
    loader = DataLoader(
        ImageList(paths, transform),
        batch_size=batch_size,
        num_workers=loader_workers(num_workers, transform, paths, device),  # none for a warm cache on a CPU
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        collate_fn=collate_images,
    )
    model.eval()
    descriptors: np.ndarray | None = None
    batch_ms: list[float] = []
    with torch.inference_mode():
        try:
            for images, index in tqdm(loader, desc=desc, unit="batch", disable=quiet, leave=False):
                started = time.perf_counter()
                if isinstance(images, list):  # native resolution, sizes differ: one image at a time
                    output = torch.cat([model(i.unsqueeze(0).to(device)) for i in images])
                else:
                    output = model(images.to(device, non_blocking=True))
                output = torch.nn.functional.normalize(output.float(), dim=1)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                batch_ms.append(1000.0 * (time.perf_counter() - started) / len(images))
                if descriptors is None:
                    shape = (len(paths), output.shape[1])
                    descriptors = device_array(shape, dtype, device) if keep_on_device else None
                    if descriptors is None:
                        descriptors = (
                            descriptor_file(out_file, shape, dtype)
                            if out_file
                            else np.empty(shape, dtype=dtype)
                        )
                if isinstance(descriptors, torch.Tensor):  # stays on the device: no host round trip
                    descriptors[index.to(device)] = output.to(descriptors.dtype)
                else:
                    descriptors[index.numpy()] = output.cpu().numpy()
        except Exception as exc:
            raise unwrap_worker_error(exc) from None
    if isinstance(descriptors, np.memmap):
        descriptors.flush()
        # read back through a fresh read-only mapping: the written pages leave this process's resident
        # set (they stay in the page cache), so the search's memory is its blocks, not the database
        descriptors = np.load(out_file, mmap_mode="r")
    return descriptors, batch_ms


def descriptor_file(path: str | Path, shape: tuple[int, int], dtype) -> np.memmap:
    """A ``.npy`` file at ``path`` memory-mapped for writing, its free space checked and its blocks
    allocated first: a memory-mapped write to a full disk would kill the process (SIGBUS, no message)."""
    what = f"{shape[0]}x{shape[1]} {np.dtype(dtype).name} descriptors"
    nbytes = shape[0] * shape[1] * np.dtype(dtype).itemsize + 4096  # and the .npy header
    require_free_space(Path(path).parent, nbytes, what, "free some space there")
    try:
        array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    except OSError as exc:
        raise WriteError(f"cannot write {what} to {path}: {exc.strerror or exc}") from exc
    reserve(path, what)
    return array


def device_array(shape: tuple[int, int], dtype, device: torch.device) -> torch.Tensor | None:
    """An empty ``shape`` tensor of ``dtype`` on a CUDA ``device`` where it takes at most half of the
    device's free memory (the rest is the search's and the model's); None elsewhere."""
    if device.type != "cuda":
        return None
    dtype = torch.from_numpy(np.empty(0, dtype=dtype)).dtype
    free_bytes, _ = torch.cuda.mem_get_info(device)
    if shape[0] * shape[1] * dtype.itemsize > free_bytes // 2:
        return None
    return torch.empty(shape, dtype=dtype, device=device)


def as_array(descriptors: np.ndarray | torch.Tensor) -> np.ndarray:
    """Descriptors as a host array (those ``extract`` kept on a device are copied back)."""
    if isinstance(descriptors, torch.Tensor):
        return descriptors.cpu().numpy()
    return descriptors


def batching(model: nn.Module | None, batch_size: int) -> dict | None:
    """How ``extract`` batched a batch-dependent model's images, for the record's protocol; None for a
    model whose descriptors do not depend on their batch. A model says it is batch-dependent with a
    ``batch_dependent`` attribute (a cross-image encoder mixes the images of one forward pass: CricaVPR,
    SuperVLAD). ``extract`` is called for the database and for the queries apart, each in the split's
    order, without shuffling, in batches of ``batch_size``, the last one partial."""
    if not getattr(model, "batch_dependent", False):
        return None
    return {
        "batch_dependent": True,
        "batch_size": batch_size,
        "database_and_queries": "separately",
        "order": "dataset",
        "last_batch": "partial, kept",
        "one_image_at_a_time": batch_size == 1,
    }


def time_forward(
    model: nn.Module,
    image_size: tuple[int, int],
    device: torch.device,
    batch_size: int = 32,
    warmup: int = 3,
    repeats: int = 10,
    budget_s: float = 15.0,
) -> tuple[float, dict]:
    """The model's ms/image alone, and how it was measured: the median of ``repeats`` timed forwards of
    one fixed batch of synthetic images after ``warmup`` untimed ones (cuDNN autotuning, allocator,
    caches), in eval mode under ``torch.inference_mode``, on ``device``.

    No image decoding or DataLoader in the timed region, and a median over repeats of the same work. A
    CPU's figure still depends on its threads and on what else the machine runs: the thread count is
    recorded, and the fastest and slowest repeat show the spread. On a CPU the batch is capped at
    ``CPU_TIMING_BATCH``; timed forwards stop early, after at least ``MIN_TIMED_REPEATS``, once
    ``budget_s`` is spent, so a large model on a CPU costs a few forwards, not minutes.
    """
    batch = min(batch_size, CPU_TIMING_BATCH) if device.type == "cpu" else batch_size
    generator = torch.Generator().manual_seed(0)  # the same input each run; the global RNG stays untouched
    images = torch.randn(batch, 3, *image_size, generator=generator).to(device)  # (B, 3, H, W)
    was_training = model.training
    model.eval()
    batch_ms: list[float] = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(images)
            spent_s = 0.0
            while len(batch_ms) < repeats and (len(batch_ms) < MIN_TIMED_REPEATS or spent_s < budget_s):
                _synchronize(device)
                started = time.perf_counter()
                model(images)
                _synchronize(device)
                batch_ms.append(1000.0 * (time.perf_counter() - started))
                spent_s += batch_ms[-1] / 1000.0
    finally:
        model.train(was_training)
    per_image = np.asarray(batch_ms) / batch
    height, width = image_size
    how = {
        "method": f"median of {len(batch_ms)} timed forwards of one fixed batch of {batch} synthetic "
        f"{height}x{width} images after {warmup} warm-ups (eval mode, torch.inference_mode, {device})",
        "threads": torch.get_num_threads(),
        "batch": batch,
        "repeats": len(batch_ms),
        "warmup": warmup,
        "min_ms_per_image": float(per_image.min()),
        "max_ms_per_image": float(per_image.max()),
    }
    return float(np.median(per_image)), how


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":  # kernels run asynchronously: wait for them on both sides of the clock
        torch.cuda.synchronize(device)
