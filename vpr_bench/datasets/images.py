"""Reading images for descriptor extraction, with errors that name the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms

from vpr_bench.errors import DatasetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The order of the evaluation transform, recorded in each record's protocol:
# "resize-first" (default): resize the PIL image with antialiasing, then normalise;
# "normalize-first": the TSCM release's order — normalise the full-size tensor, then resize it bilinearly
# without antialiasing (what its authors' numbers were measured with).
PREPROCESSING = ("resize-first", "normalize-first")


def load_rgb(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}; replace or remove the file") from None


def check_readable(path: str | Path) -> None:
    """Fully decode one image (``verify`` alone misses truncated JPEG data)."""
    load_rgb(path).load()


def eval_transform(
    image_size: tuple[int, int], mean=IMAGENET_MEAN, std=IMAGENET_STD, preprocess: str = "resize-first"
) -> transforms.Compose:
    """Resize to (H, W) and normalise, in the order ``preprocess`` names; the same for database and
    queries."""
    if preprocess == "normalize-first":
        resize = transforms.Resize(
            tuple(image_size), interpolation=transforms.InterpolationMode.BILINEAR, antialias=False
        )
        return transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std), resize])
    if preprocess != "resize-first":
        raise ValueError(f"preprocess {preprocess!r} is not one of {', '.join(PREPROCESSING)}")
    return transforms.Compose(
        [
            transforms.Resize(tuple(image_size), antialias=True),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def model_transform(
    model, image_size: tuple[int, int], preprocess: str = "resize-first"
) -> transforms.Compose:
    """The eval transform with the normalisation the backbone weights expect (ImageNet's if unknown)."""
    facts = getattr(model, "backbone_facts", {})
    mean, std = facts.get("mean", IMAGENET_MEAN), facts.get("std", IMAGENET_STD)
    return eval_transform(image_size, mean, std, preprocess)


class ImageList(Dataset):
    """Images by path → (tensor, index)."""

    def __init__(self, paths: Sequence[str | Path], transform):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(load_rgb(self.paths[index])), index


def unwrap_worker_error(exc: BaseException) -> BaseException:
    """DataLoader workers re-raise our errors with a whole traceback as the message: keep its last line."""
    message = str(exc)
    if isinstance(exc, DatasetError) and "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        return DatasetError(last.split(": ", 1)[1] if ": " in last else last)
    return exc
