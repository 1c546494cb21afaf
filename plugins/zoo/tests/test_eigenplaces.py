"""``eigenplaces``: ``--weights official[:FILE]`` knows every file the authors publish, and each file decides
its backbone and descriptor size. EigenPlaces is CosPlace's network with CosPlace's key names (the
cosplace_resnet50_2048 fixture proves it, see test_cosplace.py); this checks the files, offline: the name →
URL → cache mapping and what a file of each variant's shapes builds, not the download.

The published variants, from ``hubconf.py``'s ``AVAILABLE_TRAINED_MODELS`` (gmberton/EigenPlaces a2969f7):
VGG16 512; ResNet18 256, 512; ResNet50 and ResNet101 128, 256, 512, 1024, 2048, each
``https://github.com/gmberton/EigenPlaces/releases/download/v1.0/{backbone}_{dim}_eigenplaces.pth``.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from reference import offline_downloads
from torch import nn

from vpr_bench.api import METHODS, ConfigError

RELEASE = "https://github.com/gmberton/EigenPlaces/releases/download/v1.0/"
VARIANTS = [("VGG16", 512), ("ResNet18", 256), ("ResNet18", 512)] + [
    (backbone, dim) for backbone in ("ResNet50", "ResNet101") for dim in (128, 256, 512, 1024, 2048)
]
CHANNELS = {"vgg16": 512, "resnet18": 512, "resnet50": 2048, "resnet101": 2048}


def shapes_of_file(backbone: str, descriptor_dim: int) -> dict[str, torch.Tensor]:
    """The state dict of the authors' network for ``backbone`` (torchvision's, cut as they cut it) and
    ``descriptor_dim``, under their key names, as meta tensors: the shapes a file of that variant has."""
    with torch.device("meta"):
        net = getattr(torchvision.models, backbone)()
        trunk = net.features[:-2] if backbone == "vgg16" else nn.Sequential(*list(net.children())[:-2])
        state = {f"backbone.{k}": v for k, v in trunk.state_dict().items()}
        state["aggregation.1.p"] = torch.empty(1)
        state["aggregation.3.weight"] = torch.empty(descriptor_dim, CHANNELS[backbone])
        state["aggregation.3.bias"] = torch.empty(descriptor_dim)
    return state


def test_every_published_file_is_known():
    files = METHODS.get("eigenplaces").spec.published.files
    assert sorted(f.name for f in files) == sorted(f"{b}_{d}_eigenplaces.pth" for b, d in VARIANTS)
    assert files[0].name == "ResNet50_2048_eigenplaces.pth"  # --weights official: the fixture's variant
    assert all(f.url == RELEASE + f.name for f in files)


@pytest.mark.parametrize(("backbone", "descriptor_dim"), VARIANTS, ids=[f"{b}_{d}" for b, d in VARIANTS])
def test_the_file_name_resolves_and_the_file_decides(monkeypatch, tmp_path, backbone, descriptor_dim):
    urls = offline_downloads(monkeypatch, tmp_path)
    spec = METHODS.get("eigenplaces").spec
    name = f"{backbone}_{descriptor_dim}_eigenplaces.pth"
    path = spec.fetch_weights(name)
    assert (urls, path) == ([RELEASE + name], tmp_path / "checkpoints" / name)
    assert spec.fetch_weights(name) == path and len(urls) == 1  # downloaded once, then from the cache
    read = spec.checkpoint_reader(shapes_of_file(backbone.lower(), descriptor_dim), path)
    assert read.description == f"official {name}"
    assert read.settings["model.options"] == {"backbone": backbone.lower(), "descriptor_dim": descriptor_dim}
    assert read.settings["data.image_size"] == (0, 0)  # native size, as their test_dataset.py


def test_the_default_and_an_unknown_name(monkeypatch, tmp_path):
    urls = offline_downloads(monkeypatch, tmp_path)
    fetch = METHODS.get("eigenplaces").spec.fetch_weights
    assert fetch(None).name == "ResNet50_2048_eigenplaces.pth"
    assert urls == [RELEASE + "ResNet50_2048_eigenplaces.pth"]
    with pytest.raises(ConfigError, match="eigenplaces publishes ResNet50_2048_eigenplaces.pth, "):
        fetch("ResNet34_512_eigenplaces.pth")
