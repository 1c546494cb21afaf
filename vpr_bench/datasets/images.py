"""Reading images for descriptor extraction, with errors that name the file, through the decoded-image
cache (``image_cache``) where the configuration has one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms

from vpr_bench.config import NATIVE
from vpr_bench.datasets import gpu_decode
from vpr_bench.datasets.image_cache import ImageCache, cache_folder
from vpr_bench.errors import DatasetError, VPRBenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NATIVE_STAGE = "decoded"  # what the image cache keeps where no PIL step precedes ToTensor
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


class ImageTransform(transforms.Compose):
    """``eval_transform``'s steps in two parts: ``pil_steps`` make the uint8 image that the decoded-image
    cache keeps (``stage`` names what they make), ``tensor_steps`` the network's input from it. ToTensor
    gives the same tensor from that image as an array as from the PIL image, so the two parts give the
    whole transform's output bit for bit. ``cache``: where such images are kept (None: nowhere)."""

    def __init__(self, pil_steps: list, tensor_steps: list, stage: str, cache: ImageCache | None = None):
        super().__init__([*pil_steps, *tensor_steps])
        self.pil_steps, self.tensor_steps = transforms.Compose(pil_steps), transforms.Compose(tensor_steps)
        self.stage, self.cache = stage, cache

    @property
    def pil_size(self) -> tuple[int, int] | None:
        """(H, W) of the images ``pil_steps`` make; None where each keeps its own size."""
        sizes = [tuple(s.size) for s in self.pil_steps.transforms if isinstance(s, transforms.Resize)]
        return sizes[-1] if sizes else None

    def cached_in(self, cache: ImageCache | None) -> ImageTransform:
        return ImageTransform(self.pil_steps.transforms, self.tensor_steps.transforms, self.stage, cache)


def eval_transform(
    image_size: tuple[int, int],
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    preprocess: str = "resize-first",
    interpolation: str = "bilinear",
) -> ImageTransform:
    """Resize to (H, W) (none for ``NATIVE``) and normalise, in the order ``preprocess`` names; the same
    for database and queries."""
    mode = transforms.InterpolationMode(interpolation)
    to_tensor, normalize = transforms.ToTensor(), transforms.Normalize(mean, std)
    if tuple(image_size) == NATIVE:
        return ImageTransform([], [to_tensor, normalize], NATIVE_STAGE)
    size = tuple(image_size)
    if preprocess == "normalize-first":  # the decoded image is kept; all of it runs on tensors
        return ImageTransform(
            [], [to_tensor, normalize, transforms.Resize(size, mode, antialias=False)], NATIVE_STAGE
        )
    if preprocess == "tensor-resize-first":
        return ImageTransform(
            [], [to_tensor, transforms.Resize(size, mode, antialias=True), normalize], NATIVE_STAGE
        )
    assert preprocess == "resize-first", preprocess  # the config checked it against DataConfig
    stage = f"resize-{size[0]}x{size[1]}-{interpolation}"
    return ImageTransform([transforms.Resize(size, mode, antialias=True)], [to_tensor, normalize], stage)


def model_transform(
    model, image_size: tuple[int, int], preprocess: str = "resize-first", interpolation: str = "bilinear"
) -> ImageTransform:
    """The eval transform with the normalisation the backbone weights expect (ImageNet's if unknown)."""
    facts = getattr(model, "backbone_facts", {})
    mean, std = facts.get("mean", IMAGENET_MEAN), facts.get("std", IMAGENET_STD)
    return eval_transform(image_size, mean, std, preprocess, interpolation)


def data_transform(model, data, device: torch.device | None = None) -> ImageTransform:
    """``model_transform`` as a ``DataConfig`` sets it (size, preprocessing order, interpolation), with
    the decoded-image cache ``data.image_cache`` names, for images described on ``device``."""
    transform = model_transform(model, data.image_size, data.preprocess, data.interpolation)
    folder, given = cache_folder(data.image_cache)
    cache = None if folder is None else ImageCache(folder, transform.stage, given)
    return on_device(transform.cached_in(cache), device)


def on_device(transform, device: torch.device | None):
    """``transform`` for images described on ``device``: on a CUDA device where nvJPEG works, its cache
    holds JPEGs decoded there (stage ``nvjpeg-…``, see ``gpu_decode``); elsewhere unchanged."""
    cache = getattr(transform, "cache", None)
    device = None if device is None else torch.device(device)  # a name ("cpu") or a device
    if cache is None or device is None or device.type != "cuda" or cache.stage.startswith(gpu_decode.STAGE):
        return transform
    if not gpu_decode.available(device):
        return transform
    return transform.cached_in(ImageCache(cache.folder, gpu_decode.STAGE + cache.stage, cache.given))


def prepare_images(paths: Sequence[str | Path], transform, device: torch.device | None = None):
    """``transform`` ready for one pass over ``paths`` on ``device``: where it has a cache, the room for
    the images not in it yet is checked before any is written (``ImageCache.make_room``), and on a CUDA
    device the JPEGs among them are decoded there in batches and written to it."""
    transform = on_device(transform, device)
    cache = getattr(transform, "cache", None)
    if cache is None:
        return transform
    missing = cache.missing(paths)
    if missing:
        height, width = transform.pil_size or first_image_size(paths[missing[0]])
        cache.make_room(len(missing), height, width)
        if cache.stage.startswith(gpu_decode.STAGE) and cache.writable:
            gpu_decode.decode_into(cache, transform.pil_steps, [paths[i] for i in missing], device)
    return transform


def load_image(path: str | Path, transform) -> torch.Tensor:
    """``transform(load_rgb(path))``, through ``transform``'s cache where it has one: a valid entry is
    read instead of the file (which is not opened); a missing or stale one is decoded and written."""
    cache = getattr(transform, "cache", None)
    if cache is None:
        return transform(load_rgb(path))
    image, stamp = cache.read(path)
    if image is None:
        image = np.array(transform.pil_steps(load_rgb(path)), dtype=np.uint8)  # (H, W, 3)
        cache.write(path, stamp, image)
    return transform.tensor_steps(image)


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
        return load_image(self.paths[index], self.transform), index


def unwrap_worker_error(exc: BaseException) -> BaseException:
    """DataLoader workers re-raise our errors with a whole traceback as the message: keep its last line."""
    message = str(exc)
    if isinstance(exc, VPRBenchError) and "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        return type(exc)(last.split(": ", 1)[1] if ": " in last else last)
    return exc
