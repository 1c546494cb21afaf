"""Filling the decoded-image cache on a GPU: JPEGs decoded there with nvJPEG
(``torchvision.io.decode_jpeg(list, device="cuda")``, a batch per call) and resized there, so that a cold
cache on a GPU machine is not bound by decoding on the CPU workers.

nvJPEG's pixels and torch's antialiased resize differ from libjpeg's and PIL's by rounding, so these
entries are a stage of their own (``nvjpeg-…``), used on CUDA devices only: a GPU run reads the same
pixels whether its cache was cold or warm, and a CPU run never reads them. What nvJPEG refuses (another
format, a damaged or unusual JPEG) is left to the DataLoader's workers, which decode it with PIL (and
name a broken file in one line).
"""

from __future__ import annotations

import functools
import io
import logging
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torchvision import transforms
from torchvision.transforms import functional as TF

from vpr_bench.datasets.image_cache import stamp_of

log = logging.getLogger(__name__)

STAGE = "nvjpeg-"  # prefix of the stages this module fills
BATCH = 64  # images per decode_jpeg call
JPEG_START = b"\xff\xd8\xff"


def decode_into(
    cache, pil_steps: transforms.Compose, paths: Sequence[str | Path], device: torch.device
) -> int:
    """Decode the JPEGs among ``paths`` on ``device``, apply the Resize steps of ``pil_steps`` there and
    write each to ``cache`` (an ``ImageCache``); the number written. Steps other than a Resize have no
    GPU form here: then nothing is decoded (the workers do it all)."""
    if not all(isinstance(step, transforms.Resize) for step in pil_steps.transforms):
        return 0
    log.info(
        "decoding up to %d images on %s (nvJPEG) into the image cache %s", len(paths), device, cache.root
    )
    written = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        for start in range(0, len(paths), BATCH):
            batch = [f for f in pool.map(_read, paths[start : start + BATCH]) if f]
            decoded = _decode(batch, device)
            for (path, stamp, _), image in zip(batch, decoded, strict=True):
                if image is None:
                    continue
                for step in pil_steps.transforms:
                    image = TF.resize(image, step.size, step.interpolation, antialias=step.antialias)
                cache.write(path, stamp, image.permute(1, 2, 0).cpu().numpy())  # (H, W, 3) uint8
                written += 1
    return written


def _read(path) -> tuple | None:
    """(path, its stamp taken before reading, its bytes as a uint8 tensor) for a JPEG file; else None."""
    stamp = stamp_of(path)
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if stamp is None or not data.startswith(JPEG_START):
        return None
    return path, stamp, torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _decode(batch: list[tuple], device: torch.device) -> list[torch.Tensor | None]:
    """Each file of ``batch`` as a (3, H, W) uint8 tensor on ``device``; one nvJPEG call for the batch,
    one per image where the batch fails (an image nvJPEG refuses is None)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not batch:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29 deprecates its decoders in favour of TorchCodec
        try:
            return list(decode_jpeg([f[2] for f in batch], mode=ImageReadMode.RGB, device=device))
        except (RuntimeError, ValueError):
            images = []
            for f in batch:
                try:
                    images.append(decode_jpeg(f[2], mode=ImageReadMode.RGB, device=device))
                except (RuntimeError, ValueError):
                    images.append(None)
            return images


@functools.lru_cache(maxsize=8)
def available(device: torch.device) -> bool:
    """Whether nvJPEG decodes on ``device`` (a CUDA device; torchvision built with it): one tiny JPEG."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (40, 80, 120)).save(buffer, format="JPEG")
    probe = (None, None, torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8))
    try:
        return _decode([probe], device)[0] is not None
    except Exception:  # no nvJPEG in this build, or no usable device: the CPU workers decode
        return False
