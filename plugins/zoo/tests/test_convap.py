"""``convap`` computes what the official gsv-cities code (amaralibey/gsv-cities 77ffffc) computes, from
its files.

The fixtures (tests/data/convap, from shared/data/reference_models/convap; README there): the official
``VPRModel`` (full ResNet-50 + ConvAP C=512, 2×2) and, in variants/, C = 128 / 1024 / 2048, filled by the
recipe (no adjustments), run on ``fixture_input(320, 320)``. The reference stores no input to check; the
backbone map is in the shared reference.npz only (not copied), so the test compares the pre-L2 descriptor
and the descriptor.

Tolerance: 1e-4 of each array's largest value. The same float32 operations in the same order give float
rounding (≈1e-6 relative) at most; these match exactly (0.0). The mutations below miss by more than 1e-2.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from reference import (
    errors,
    fixture_input,
    keys,
    load_as_user,
    load_layout,
    official_state,
    reference,
    same_weights,
    write_official,
)

from vpr_bench.api import CheckpointError, ConfigError
from vpr_bench.api import resolve_config as resolve

TOLERANCE = 1e-4
OFFICIAL_NAME = "resnet50_ConvAP_512_2x2.ckpt"
FILE_OPTIONS = {"backbone": "resnet50", "last_layer": 4, "out_channels": 512}


def run(model) -> dict[str, torch.Tensor]:
    """One forward of the fixture input: the trunk's map (caught on the way), the pre-L2 descriptor, the
    descriptor."""
    caught = {}
    hook = model.backbone.register_forward_hook(lambda module, args, out: caught.update(features=out[-1]))
    with torch.inference_mode():
        descriptor = model(fixture_input(320, 320))
        pooled = model.pooled(caught["features"])  # (2, C, 2, 2)
    hook.remove()
    return {"features": caught["features"], "pooled": pooled, "descriptor": descriptor}


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    return official_state(keys("convap"))


@pytest.fixture(scope="module")
def loaded(official, tmp_path_factory):
    """(model, read file, config) of the official file as downloaded: a flat state dict."""
    return load_as_user("convap", write_official(official, tmp_path_factory.mktemp("convap") / OFFICIAL_NAME))


@pytest.fixture(scope="module")
def outputs(loaded) -> dict[str, torch.Tensor]:
    return run(loaded[0])


def test_descriptor_and_intermediates_match_the_official_code(outputs):
    found = {"agg_prenorm": outputs["pooled"].flatten(1), "descriptor": outputs["descriptor"]}
    relative = errors(found, reference("convap"))
    assert max(relative.values()) <= TOLERANCE, relative
    assert outputs["features"].shape == (2, 2048, 10, 10)
    assert torch.allclose(outputs["descriptor"].norm(dim=1), torch.ones(2))


@pytest.mark.parametrize("channels", [128, 1024, 2048])
def test_each_released_size_matches_the_official_code(channels, tmp_path):
    """The file decides C: each variant's file loads with no option and matches its reference."""
    variant = f"variants/out{channels}"
    name = f"resnet50_ConvAP_{channels}_2x2.ckpt"
    model, read, _ = load_as_user(
        "convap", write_official(official_state(keys("convap", f"{variant}/keys.json")), tmp_path / name)
    )
    assert read.settings["model.options"] == {**FILE_OPTIONS, "out_channels": channels}
    assert model.descriptor_dim == 4 * channels
    found = run(model)
    relative = errors(
        {"agg_prenorm": found["pooled"].flatten(1), "descriptor": found["descriptor"]},
        reference("convap", f"{variant}/variant.npz"),
    )
    assert max(relative.values()) <= TOLERANCE, relative


def test_the_official_file_decides_the_model_and_its_preprocessing(loaded):
    model, read, cfg = loaded
    assert read.settings["model.options"] == FILE_OPTIONS
    assert read.description == f"official {OFFICIAL_NAME}"
    assert (cfg.data.image_size, cfg.data.preprocess, cfg.data.interpolation) == (
        (320, 320),
        "resize-first",
        "bilinear",
    )
    assert model.descriptor_dim == 2048


@pytest.mark.parametrize(
    "layout",
    [
        {"wrapper": "state_dict", "epoch": 3},  # the notebook's commented-out raw Lightning checkpoint
        {"prefix": "module."},
        {"drop_counters": True},  # README: unverified whether the released files keep num_batches_tracked
    ],
    ids=["lightning-wrapper", "module-prefix", "no-num_batches_tracked"],
)
def test_other_layouts_load_the_same_weights(official, loaded, layout, tmp_path):
    assert same_weights(load_layout("convap", official, tmp_path / "file.ckpt", **layout), loaded[0])


def test_mutations_miss_the_reference_by_far(loaded, outputs):
    """Right-looking slips: the flatten position-major ((i·2 + j)·C + c), max pooling instead of average."""
    expected = reference("convap")["descriptor"]
    position_major = F.normalize(outputs["pooled"].permute(0, 2, 3, 1).flatten(1), dim=1)
    with torch.inference_mode():
        reduced = loaded[0].channel_pool(outputs["features"])  # (2, 512, 10, 10)
    max_pooled = F.normalize(F.adaptive_max_pool2d(reduced, (2, 2)).flatten(1), dim=1)
    for mutated in (position_major, max_pooled):
        assert errors({"descriptor": mutated}, {"descriptor": expected})["descriptor"] > 100 * TOLERANCE


def test_a_file_of_another_model_fails_in_one_line(tmp_path):
    path = write_official(
        official_state(keys("mixvpr")), tmp_path / "resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt"
    )
    with pytest.raises(CheckpointError) as caught:
        load_as_user("convap", path)
    message = str(caught.value)
    assert "\n" not in message and "a convap model" in message
    assert "missing (first: backbone.conv1.weight" in message
    assert "unexpected (first: backbone.model.conv1.weight" in message


def test_an_official_file_without_a_key_fails_naming_it(official, tmp_path):
    state = {k: v for k, v in official.items() if k != "aggregator.channel_pool.bias"}
    with pytest.raises(CheckpointError, match=r"convap checkpoint but lacks 'aggregator.channel_pool.bias'"):
        load_as_user("convap", write_official(state, tmp_path / "cut.ckpt"))


def test_a_resnet_torchvision_never_built_fails_naming_its_layout(tmp_path):
    state = {f"backbone.model.layer1.{i}.conv3.weight": torch.zeros(1, 1, 1, 1) for i in range(5)}
    state["backbone.model.layer1.0.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    state["aggregator.channel_pool.weight"] = torch.zeros(8, 1, 1, 1)
    with pytest.raises(CheckpointError, match=r"\(5,\) bottleneck blocks per layer, which is none of"):
        load_as_user("convap", write_official(state, tmp_path / "odd.ckpt"))


def test_the_file_decides_the_variant(tmp_path):
    """ResNet-18 cut after layer3 (the official ``layers_to_crop=[4]``: 256 channels), C = 64: 256-d."""
    trunk = timm.create_model("resnet18", features_only=True, out_indices=(3,)).state_dict()
    key_list = [("backbone.model." + k, list(v.shape), str(v.dtype).split(".")[1]) for k, v in trunk.items()]
    key_list += [
        ("aggregator.channel_pool.weight", [64, 256, 1, 1], "float32"),
        ("aggregator.channel_pool.bias", [64], "float32"),
    ]
    model, read, _ = load_as_user("convap", write_official(official_state(key_list), tmp_path / "small.ckpt"))
    assert read.settings["model.options"] == {"backbone": "resnet18", "last_layer": 3, "out_channels": 64}
    with torch.inference_mode():
        descriptor = model(fixture_input(64, 64))  # Conv-AP runs at any size: a 4×4 map pooled to 2×2
    assert model.descriptor_dim == 256 and descriptor.shape == (2, 256)
    assert torch.allclose(descriptor.norm(dim=1), torch.ones(2))


def test_an_option_contradicting_the_file_fails(loaded):
    read = loaded[1]
    for contradiction in ({"out_channels": 1024}, {"backbone": "resnet101"}, {"last_layer": 3}):
        with pytest.raises(ConfigError, match="contradicts the checkpoint"):
            resolve("paper", {"model.method": "convap", "model.options": contradiction}, read.settings)
    # the pooling grid holds no weights: the file cannot tell it, so it stays an option (released: 2×2)
    grid = resolve(
        "paper", {"model.method": "convap", "model.options": {"out_channels": 512, "s1": 1}}, read.settings
    )
    assert grid.model.options == {**FILE_OPTIONS, "s1": 1}
