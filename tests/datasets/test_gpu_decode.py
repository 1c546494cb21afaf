"""Filling the image cache with decode_jpeg in batches: run here with torchvision's CPU decoder (the call
nvJPEG takes on CUDA, with device="cpu"), and on CUDA where there is one."""

import numpy as np
import pytest
import torch
from PIL import Image

from vpr_bench.datasets import gpu_decode
from vpr_bench.datasets.image_cache import ImageCache
from vpr_bench.datasets.images import eval_transform, load_rgb, on_device, prepare_images


def write_images(folder):
    """Four JPEGs, a PNG, and a file that starts like a JPEG but is not one."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        paths.append(folder / f"{i}.{'png' if i == 4 else 'jpg'}")
        Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(paths[-1])
    paths.append(folder / "broken.jpg")
    paths[-1].write_bytes(gpu_decode.JPEG_START + b"not a JPEG" * 8)
    return paths


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
    ],
)
def test_jpegs_are_decoded_in_batches_resized_and_kept_the_rest_left_to_the_workers(tmp_path, device):
    paths = write_images(tmp_path)
    transform = eval_transform((24, 32))
    cache = ImageCache(tmp_path / "cache", gpu_decode.STAGE + transform.stage)
    assert gpu_decode.decode_into(cache, transform.pil_steps, paths, torch.device(device)) == 4
    for path in paths[:4]:
        image, _ = cache.read(path)
        pil = np.array(transform.pil_steps(load_rgb(path)))
        assert image.shape == pil.shape == (24, 32, 3)
        assert np.abs(image.astype(int) - pil).max() <= 2  # another decoder and resize: rounding apart
    assert cache.read(paths[4])[0] is None and cache.read(paths[5])[0] is None  # PNG, broken: PIL's


def test_the_gpu_stage_is_used_only_where_nvjpeg_decodes(tmp_path, monkeypatch):
    transform = eval_transform((24, 32)).cached_in(ImageCache(tmp_path, "resize-24x32-bilinear"))
    assert on_device(transform, torch.device("cpu")) is transform
    monkeypatch.setattr(gpu_decode, "available", lambda device: device.type == "cuda")
    on_gpu = on_device(transform, torch.device("cuda"))
    assert (
        on_gpu.cache.stage == "nvjpeg-resize-24x32-bilinear"
        and on_device(on_gpu, torch.device("cuda")) is on_gpu
    )
    decoded = []
    monkeypatch.setattr(gpu_decode, "decode_into", lambda cache, steps, paths, device: decoded.extend(paths))
    (tmp_path / "images").mkdir()
    paths = write_images(tmp_path / "images")
    prepare_images(paths, transform, torch.device("cuda"))
    assert decoded == paths  # every image not kept yet goes to the GPU first (it skips what it cannot)
    monkeypatch.setattr(gpu_decode, "available", lambda device: False)
    assert on_device(transform, torch.device("cuda")) is transform  # no nvJPEG: PIL's pixels, PIL's stage


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nvjpeg_is_found_on_a_cuda_device():
    assert gpu_decode.available(torch.device("cuda"))
