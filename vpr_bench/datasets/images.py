"""Reading images for descriptor extraction, with errors that name the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms

from vpr_bench.config import NATIVE
from vpr_bench.errors import DatasetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# How an image becomes the network's input is recorded in each record's protocol (``data.preprocess``,
# ``data.interpolation``); the allowed values and what each means are declared on ``DataConfig``'s fields.
# An image size of ``NATIVE`` keeps each image's own size (CosPlace / EigenPlaces).


def load_rgb(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}; replace or remove the file") from None


def first_image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image, read from its header."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}; replace or remove the file") from None


def check_readable(path: str | Path) -> None:
    """Fully decode one image (``verify`` alone misses truncated JPEG data)."""
    load_rgb(path).load()


def eval_transform(
    image_size: tuple[int, int],
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    preprocess: str = "resize-first",
    interpolation: str = "bilinear",
) -> transforms.Compose:
    """Resize to (H, W) (none for ``NATIVE``) and normalise, in the order ``preprocess`` names; the same
    for database and queries."""
    mode = transforms.InterpolationMode(interpolation)
    to_tensor, normalize = transforms.ToTensor(), transforms.Normalize(mean, std)
    if tuple(image_size) == NATIVE:
        return transforms.Compose([to_tensor, normalize])
    size = tuple(image_size)
    if preprocess == "normalize-first":
        return transforms.Compose([to_tensor, normalize, transforms.Resize(size, mode, antialias=False)])
    if preprocess == "tensor-resize-first":
        return transforms.Compose([to_tensor, transforms.Resize(size, mode, antialias=True), normalize])
    assert preprocess == "resize-first", preprocess  # the config checked it against DataConfig
    return transforms.Compose([transforms.Resize(size, mode, antialias=True), to_tensor, normalize])


def model_transform(
    model, image_size: tuple[int, int], preprocess: str = "resize-first", interpolation: str = "bilinear"
) -> transforms.Compose:
    """The eval transform with the normalisation the backbone weights expect (ImageNet's if unknown)."""
    facts = getattr(model, "backbone_facts", {})
    mean, std = facts.get("mean", IMAGENET_MEAN), facts.get("std", IMAGENET_STD)
    return eval_transform(image_size, mean, std, preprocess, interpolation)


def data_transform(model, data) -> transforms.Compose:
    """``model_transform`` as a ``DataConfig`` sets it (size, preprocessing order, interpolation)."""
    return model_transform(model, data.image_size, data.preprocess, data.interpolation)


def collate_images(batch: list[tuple[torch.Tensor, int]]):
    """Stack a batch of (image, index); images of different sizes (native resolution) stay a list."""
    images, index = zip(*batch, strict=True)
    same = all(i.shape == images[0].shape for i in images)
    return (torch.stack(images) if same else list(images)), torch.tensor(index)


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
