"""How many DataLoader workers one pass over some images is worth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def loader_workers(requested: int, transform, paths: Sequence[str | Path], device: torch.device) -> int:
    """``requested`` (``--num-workers``), or none on a CPU where every one of ``paths`` is in
    ``transform``'s decoded-image cache. Reading an entry there takes about 0.25 ms an image at 48×64
    and 2 ms at 224×224, a small share of a CPU's forward pass, while each pass's workers cost a fork and
    a first batch before the model gets any and a hand-over between processes for every batch, on the
    cores the model computes on. Images still to decode, and a GPU, keep the workers."""
    if requested == 0 or device.type != "cpu":
        return requested
    cache = getattr(transform, "cache", None)
    if cache is None or cache.missing(paths):
        return requested
    return 0
