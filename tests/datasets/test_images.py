"""The evaluation transform: each preprocessing order, interpolation, and native resolution."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from vpr_bench.datasets.images import eval_transform


@pytest.fixture
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))


MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def test_each_order_does_what_it_says(image):
    tensor = TF.to_tensor(image)
    expected = {
        "resize-first": TF.normalize(TF.to_tensor(TF.resize(image, [30, 40], antialias=True)), MEAN, STD),
        "tensor-resize-first": TF.normalize(TF.resize(tensor, [30, 40], antialias=True), MEAN, STD),
        "normalize-first": TF.resize(TF.normalize(tensor, MEAN, STD), [30, 40], antialias=False),
    }
    outputs = {order: eval_transform((30, 40), MEAN, STD, order)(image) for order in expected}
    for order, want in expected.items():
        torch.testing.assert_close(outputs[order], want)
    # the three orders are different functions (else the option would mean nothing)
    assert (outputs["normalize-first"] - outputs["tensor-resize-first"]).abs().max() > 1e-3


def test_bicubic_differs_from_bilinear_and_native_keeps_the_size(image):
    bilinear = eval_transform((30, 40), MEAN, STD, interpolation="bilinear")(image)
    bicubic = eval_transform((30, 40), MEAN, STD, interpolation="bicubic")(image)
    assert bilinear.shape == bicubic.shape == (3, 30, 40) and (bilinear - bicubic).abs().max() > 1e-3
    assert eval_transform((0, 0), MEAN, STD)(image).shape == (3, 60, 80)


def test_native_resolution_evaluates_images_of_different_sizes(tmp_path):
    """CosPlace evaluates at each image's own size: batches of mixed sizes go one image at a time."""
    from vpr_bench.evaluation.descriptors import extract
    from vpr_bench.methods import build_method
    from vpr_bench.testing import tiny_config

    paths = []
    for i, size in enumerate([(40, 32), (48, 40), (40, 32)]):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", size, (i * 60, 90, 30)).save(paths[-1])
    model = build_method(tiny_config(**{"model.method": "gem"}).model)
    transform = eval_transform((0, 0))
    descriptors, _ = extract(
        model, paths, transform, torch.device("cpu"), batch_size=3, num_workers=0, quiet=True
    )
    one_by_one = [
        extract(model, [p], transform, torch.device("cpu"), num_workers=0, quiet=True)[0] for p in paths
    ]
    np.testing.assert_allclose(descriptors, np.concatenate(one_by_one), atol=1e-6)
