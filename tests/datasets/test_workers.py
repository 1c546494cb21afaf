"""DataLoader workers only where they pay: none on a CPU for images that are all in the decoded-image
cache; the requested number for images still to decode, without a cache, and on a GPU."""

import numpy as np
import torch
from PIL import Image

from vpr_bench.datasets.image_cache import ImageCache
from vpr_bench.datasets.images import eval_transform, load_image
from vpr_bench.datasets.workers import loader_workers

CPU, GPU = torch.device("cpu"), torch.device("cuda")


def test_workers_only_for_images_still_to_decode_on_a_cpu(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((20, 24, 3), 40 * i, dtype=np.uint8)).save(paths[-1])
    plain = eval_transform((16, 16))
    cached = plain.cached_in(ImageCache(tmp_path / "cache", plain.stage))
    assert loader_workers(2, plain, paths, CPU) == 2  # no cache: every pass decodes
    for path in paths[:2]:
        load_image(path, cached)  # now in the cache
    assert loader_workers(2, cached, paths, CPU) == 2  # one still to decode
    assert loader_workers(2, cached, paths[:2], CPU) == 0  # all read from the cache
    assert loader_workers(2, cached, paths[:2], GPU) == 2  # a GPU keeps them: its steps are short
    assert loader_workers(0, cached, paths, CPU) == 0
