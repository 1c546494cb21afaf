"""``cosplace`` / ``eigenplaces`` against the official code's outputs (tests/data/cosplace_*; see the READMEs
in shared/data/reference_models): the recipe's weights in the authors' file layout, loaded as a user's
``--checkpoint``, give the official GeM output, Linear output and descriptor.

Tolerance: each array within 1e-4 of its own largest value. Float32 rounding only: the README notes that
GeM's 1/p ≈ −26 amplifies rounding (an independent head formulation moves the descriptor by ~1e-6, ~1e-5
of its scale); the mistakes it lists (no channel L2-norm, p = 3, eps 1e-5, no bias) move it by 1e-2 to 1e-1.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from reference import errors, fixture_input, keys, load_as_user, official_state, reference, write_official
from torch import nn

from vpr_bench.api import CheckpointError, ConfigError
from vpr_bench.api import resolve_config as resolve

TOLERANCE = 1e-4
ADJUST = {"aggregation.3.bias": 0.01}  # both READMEs' only adjustment (the plain fc bias collapses outputs)
SIZE = 512  # the fixtures' input: 512×512 (CosPlace evaluates any size)


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    """``official_file(fixture, wrapper=None)``: the recipe's weights in the authors' layout, written once."""
    written = {}

    def write(fixture: str, wrapper: str | None = None):
        if (fixture, wrapper) not in written:
            path = tmp_path_factory.mktemp(fixture) / f"{fixture}.pth"
            written[fixture, wrapper] = write_official(official_state(keys(fixture), ADJUST), path, wrapper)
        return written[fixture, wrapper]

    return write


def run_with_intermediates(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The descriptor, and GeM's and the Linear's outputs on the way (the fixtures' gem, fc_pre_l2)."""
    found = {}
    hooks = [
        model.gem.register_forward_hook(lambda m, i, out: found.__setitem__("gem", out)),
        model.fc.register_forward_hook(lambda m, i, out: found.__setitem__("fc_pre_l2", out)),
    ]
    with torch.inference_mode():
        found["descriptor"] = model(images)
    for hook in hooks:
        hook.remove()
    return found


@pytest.fixture(scope="module")
def resnet18(official_file):
    """The ResNet-18 512-d fixture as a user loads it: (model, MethodCheckpoint, RunConfig)."""
    return load_as_user("cosplace", official_file("cosplace_resnet18_512"))


@pytest.mark.parametrize(
    ("method", "fixture"),
    [
        ("cosplace", "cosplace_resnet18_512"),
        ("cosplace", "cosplace_resnet50_2048"),
        ("eigenplaces", "cosplace_resnet50_2048"),  # same network and keys (fixture README)
    ],
)
def test_matches_the_official_outputs(official_file, method, fixture):
    # hubconf / eval.py load a plain state dict: no wrapper, no module. prefix
    model, read, cfg = load_as_user(method, official_file(fixture))
    assert cfg.data.image_size == (0, 0)  # native resolution, no resize
    assert (cfg.data.preprocess, cfg.data.interpolation) == ("resize-first", "bilinear")
    found = run_with_intermediates(model, fixture_input(SIZE, SIZE))
    expected = reference(fixture)
    assert set(found) == set(expected)
    assert max(errors(found, expected).values()) <= TOLERANCE, errors(found, expected)


def test_the_training_checkpoint_wrapper_loads_the_same(official_file, resnet18):
    """train.py's ``last_checkpoint.pth`` holds the state dict under ``model_state_dict``."""
    path = official_file("cosplace_resnet18_512", wrapper="model_state_dict")
    wrapped, _, _ = load_as_user("cosplace", path)
    for ours, theirs in zip(resnet18[0].state_dict().values(), wrapped.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda m: setattr(m, "channel_norm", nn.Identity()), id="no-L2-before-GeM"),
        pytest.param(lambda m: m.gem.p.data.fill_(3.0), id="GeM-p-3-not-the-file's"),
        pytest.param(lambda m: setattr(m.gem, "eps", 1e-5), id="GeM-eps-1e-5"),
        pytest.param(lambda m: m.fc.bias.data.zero_(), id="no-fc-bias"),
    ],
)
def test_a_mutated_network_misses_the_reference_by_far(resnet18, mutate):
    model = copy.deepcopy(resnet18[0])
    mutate(model)
    found = run_with_intermediates(model, fixture_input(SIZE, SIZE))
    assert errors(found, reference("cosplace_resnet18_512"))["descriptor"] > 30 * TOLERANCE


def test_the_file_decides_backbone_and_size(tmp_path, resnet18):
    model, read, cfg = resnet18
    assert read.settings["model.options"] == {"backbone": "resnet18", "descriptor_dim": 512}
    assert cfg.model.options == read.settings["model.options"]
    assert len(model.backbone.layer1) == 2 and model.descriptor_dim == 512
    # a 64-d ResNet-18 file builds a 64-d model, again without an option
    state = official_state(keys("cosplace_resnet18_512"), ADJUST)
    state["aggregation.3.weight"], state["aggregation.3.bias"] = (
        state["aggregation.3.weight"][:64],
        state["aggregation.3.bias"][:64],
    )
    small, read, _ = load_as_user("cosplace", write_official(state, tmp_path / "ResNet18_64_cosplace.pth"))
    assert read.settings["model.options"] == {"backbone": "resnet18", "descriptor_dim": 64}
    assert small(fixture_input(64, 64)).shape == (2, 64)


def test_an_option_contradicting_the_file_fails(resnet18):
    _, read, _ = resnet18
    for options in ({"backbone": "resnet50"}, {"descriptor_dim": 2048}):
        with pytest.raises(ConfigError, match="contradicts the checkpoint"):
            resolve("paper", {"model.method": "cosplace", "model.options": options}, read.settings)
    agreeing = {"backbone": "resnet18", "descriptor_dim": 512}
    resolve("paper", {"model.method": "cosplace", "model.options": agreeing}, read.settings)


def test_a_wrong_file_fails_in_one_line(tmp_path):
    with torch.device("meta"):  # shapes only
        imagenet_resnet = torchvision.models.resnet18().state_dict()
    other = official_state(
        [(k, list(v.shape), str(v.dtype).split(".")[-1]) for k, v in imagenet_resnet.items()]
    )
    with pytest.raises(CheckpointError) as caught:
        load_as_user("cosplace", write_official(other, tmp_path / "resnet18_imagenet.pth"))
    message = str(caught.value)
    assert "\n" not in message and "a cosplace model" in message
    assert "missing (first: backbone.conv1.weight" in message and "unexpected (first: conv1.weight" in message

    truncated = official_state(keys("cosplace_resnet18_512"))
    del truncated["aggregation.3.weight"]
    with pytest.raises(
        CheckpointError, match="looks like a cosplace checkpoint but lacks 'aggregation.3.weight'"
    ):
        load_as_user("cosplace", write_official(truncated, tmp_path / "truncated.pth"))


def torchvision_official(name: str, descriptor_dim: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The authors' network from torchvision, its backbone cut as their code cuts it (ResNet: children[:-2],
    as the README says; VGG16: features[:-2], as ``get_backbone`` of cosplace_network.py does), and its
    recipe state dict in their key names."""
    with torch.device("meta"):
        net = getattr(torchvision.models, name)()
    trunk = net.features[:-2] if name == "vgg16" else nn.Sequential(*list(net.children())[:-2])
    channels = 512 if name == "vgg16" else net.fc.in_features
    shapes = {f"backbone.{k}": v for k, v in trunk.state_dict().items()}
    shapes |= {
        "aggregation.1.p": torch.empty(1),
        "aggregation.3.weight": torch.empty(descriptor_dim, channels),
        "aggregation.3.bias": torch.empty(descriptor_dim),
    }
    state = official_state(
        [(k, list(v.shape), str(v.dtype).split(".")[-1]) for k, v in shapes.items()], ADJUST
    )
    trunk.load_state_dict(
        {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}, assign=True
    )
    return trunk.eval(), state


@pytest.mark.parametrize(
    ("name", "descriptor_dim"), [("vgg16", 512), ("resnet101", 2048), ("resnet152", 2048)]
)
def test_other_released_backbones_follow_the_file(tmp_path, name, descriptor_dim):
    """No fixture for these: the file decides them, and our network computes what torchvision's backbone
    cut as the authors cut it, followed by their head, computes."""
    trunk, state = torchvision_official(name, descriptor_dim)
    model, read, _ = load_as_user("cosplace", write_official(state, tmp_path / f"{name}.pth"))
    assert read.settings["model.options"] == {"backbone": name, "descriptor_dim": descriptor_dim}
    images = fixture_input(96, 64)
    with torch.inference_mode():
        features = F.normalize(trunk(images), dim=1)
        p = state["aggregation.1.p"]
        pooled = F.avg_pool2d(features.clamp(min=1e-6).pow(p), features.shape[-2:]).pow(1 / p).flatten(1)
        expected = F.normalize(F.linear(pooled, state["aggregation.3.weight"], state["aggregation.3.bias"]))
        assert (
            errors({"descriptor": model(images)}, {"descriptor": expected.numpy()})["descriptor"] <= TOLERANCE
        )
    if name == "vgg16":  # keeping conv5_3's ReLU (features[:-1]) is a mistake the comparison sees
        model.backbone.append(nn.ReLU())
        with torch.inference_mode():
            assert errors({"d": model(images)}, {"d": expected.numpy()})["d"] > 30 * TOLERANCE


def test_an_unreleased_resnet_fails_naming_its_layout(tmp_path):
    trunk, state = torchvision_official("resnet34", 512)  # basic blocks 3, 4, 6, 3: not a CosPlace backbone
    with pytest.raises(CheckpointError, match="holding a resnet34, which is none of their backbones"):
        load_as_user("eigenplaces", write_official(state, tmp_path / "resnet34.pth"))
