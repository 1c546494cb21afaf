"""Descriptor extraction through a DataLoader into a (memory-mappable) float32 array."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from vpr_bench.datasets.images import ImageList, unwrap_worker_error


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
) -> tuple[np.ndarray, list[float]]:
    """L2-normalised descriptors (N, D) and the model's ms/image of each batch.

    With ``out_file`` the array is a ``np.memmap`` on disk, so a large database is never held twice;
    ``dtype`` float16 halves it (the search index then stores float16 too).
    """
    loader = DataLoader(
        ImageList(paths, transform),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    model.eval()
    descriptors: np.ndarray | None = None
    batch_ms: list[float] = []
    with torch.inference_mode():
        try:
            for images, index in tqdm(loader, desc=desc, unit="batch", disable=quiet, leave=False):
                images = images.to(device, non_blocking=True)
                started = time.perf_counter()
                output = torch.nn.functional.normalize(model(images).float(), dim=1)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                batch_ms.append(1000.0 * (time.perf_counter() - started) / len(images))
                if descriptors is None:
                    shape = (len(paths), output.shape[1])
                    descriptors = (
                        np.lib.format.open_memmap(out_file, mode="w+", dtype=dtype, shape=shape)
                        if out_file
                        else np.empty(shape, dtype=dtype)
                    )
                descriptors[index.numpy()] = output.cpu().numpy()
        except Exception as exc:
            raise unwrap_worker_error(exc) from None
    if isinstance(descriptors, np.memmap):
        descriptors.flush()
    return descriptors, batch_ms


def median_ms_per_image(batch_ms: list[float], warmup: int = 1) -> float:
    """Median over batches, after the warm-up batches (cuDNN autotune, allocator, caches)."""
    timed = batch_ms[warmup:] or batch_ms
    return float(np.median(timed)) if timed else float("nan")
