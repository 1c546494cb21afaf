"""``mixvpr`` computes what the official MixVPR code (amaralibey/MixVPR 4043915) computes, from its files.

The fixture (tests/data/mixvpr, from shared/data/reference_models/mixvpr; README there): the official
``VPRModel`` (ResNet-50 to layer3 + MixVPR 1024 channels × 4 rows) filled by the recipe (no adjustments),
run on ``fixture_input(320, 320)``. The reference stores no input to check; the backbone map is in the
shared reference.npz only (not copied), so the test compares the pre-L2 descriptor and the descriptor.

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
OFFICIAL_NAME = "resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt"
FILE_OPTIONS = {
    "backbone": "resnet50",
    "last_layer": 3,
    "map_cells": 400,
    "mix_depth": 4,
    "mlp_ratio": 1,
    "out_channels": 1024,
    "out_rows": 4,
}


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    return official_state(keys("mixvpr"))


@pytest.fixture(scope="module")
def loaded(official, tmp_path_factory):
    """(model, read file, config) of the official file as downloaded: a flat state dict."""
    return load_as_user("mixvpr", write_official(official, tmp_path_factory.mktemp("mixvpr") / OFFICIAL_NAME))


@pytest.fixture(scope="module")
def outputs(loaded) -> dict[str, torch.Tensor]:
    """One forward of the fixture input: the trunk's map (caught on the way), the rows, the descriptor."""
    model = loaded[0]
    caught = {}
    hook = model.backbone.register_forward_hook(lambda module, args, out: caught.update(features=out[-1]))
    with torch.inference_mode():
        descriptor = model(fixture_input(320, 320))
        rows = model.rows(caught["features"])  # (2, 1024, 4)
    hook.remove()
    return {"features": caught["features"], "rows": rows, "descriptor": descriptor}


def test_descriptor_and_intermediates_match_the_official_code(outputs):
    found = {"agg_prenorm": outputs["rows"].flatten(1), "descriptor": outputs["descriptor"]}
    relative = errors(found, reference("mixvpr"))
    assert max(relative.values()) <= TOLERANCE, relative
    assert outputs["features"].shape == (2, 1024, 20, 20)
    assert torch.allclose(outputs["descriptor"].norm(dim=1), torch.ones(2))


def test_the_official_file_decides_the_model_and_its_preprocessing(loaded):
    model, read, cfg = loaded
    assert read.settings["model.options"] == FILE_OPTIONS
    assert read.description == f"official {OFFICIAL_NAME}"
    assert (cfg.data.image_size, cfg.data.preprocess, cfg.data.interpolation) == (
        (320, 320),
        "resize-first",
        "bilinear",
    )
    assert model.descriptor_dim == 4096


@pytest.mark.parametrize(
    "layout",
    [
        {"wrapper": "state_dict", "epoch": 3},  # a Lightning checkpoint of the same VPRModel
        {"prefix": "module."},
        {"drop_counters": True},  # README: unverified whether the released files keep num_batches_tracked
    ],
    ids=["lightning-wrapper", "module-prefix", "no-num_batches_tracked"],
)
def test_other_layouts_load_the_same_weights(official, loaded, layout, tmp_path):
    assert same_weights(load_layout("mixvpr", official, tmp_path / "file.ckpt", **layout), loaded[0])


def test_mutations_miss_the_reference_by_far(loaded, outputs):
    """Right-looking slips: the flatten transposed (row-major r·C + c), the mixers' LayerNorm left out."""
    model, expected = loaded[0], reference("mixvpr")["descriptor"]
    transposed = F.normalize(outputs["rows"].transpose(1, 2).flatten(1), dim=-1)
    with torch.inference_mode():
        maps = outputs["features"].flatten(2)
        for mixer in model.mixers:
            maps = maps + mixer.reduce(F.relu(mixer.expand(maps)))
        rows = model.row_proj(model.channel_proj(maps.transpose(1, 2)).transpose(1, 2))
    without_norm = F.normalize(rows.flatten(1), dim=-1)
    for mutated in (transposed, without_norm):
        assert errors({"descriptor": mutated}, {"descriptor": expected})["descriptor"] > 100 * TOLERANCE


def test_a_file_of_another_model_fails_in_one_line(tmp_path):
    path = write_official(official_state(keys("convap")), tmp_path / "resnet50_ConvAP_512_2x2.ckpt")
    with pytest.raises(CheckpointError) as caught:
        load_as_user("mixvpr", path)
    message = str(caught.value)
    assert "\n" not in message and "a mixvpr model" in message
    assert "missing (first: backbone.conv1.weight" in message
    assert "unexpected (first: backbone.model.conv1.weight" in message


def test_an_official_file_without_a_key_fails_naming_it(official, tmp_path):
    state = {k: v for k, v in official.items() if k != "aggregator.channel_proj.weight"}
    with pytest.raises(
        CheckpointError, match=r"mixvpr checkpoint but lacks 'aggregator.channel_proj.weight'"
    ):
        load_as_user("mixvpr", write_official(state, tmp_path / "cut.ckpt"))


def small_variant_keys() -> list[tuple[str, list[int], str]]:
    """An official-layout key list of ResNet-18 to layer3 (256 channels), 2 mixers, 64 × 2 rows: 128-d."""
    trunk = timm.create_model("resnet18", features_only=True, out_indices=(3,)).state_dict()
    key_list = [("backbone.model." + k, list(v.shape), str(v.dtype).split(".")[1]) for k, v in trunk.items()]
    for index in range(2):
        mixer = f"aggregator.mix.{index}.mix"
        key_list += [(f"{mixer}.0.weight", [400], "float32"), (f"{mixer}.0.bias", [400], "float32")]
        for linear in (1, 3):
            key_list += [
                (f"{mixer}.{linear}.weight", [400, 400], "float32"),
                (f"{mixer}.{linear}.bias", [400], "float32"),
            ]
    key_list += [
        ("aggregator.channel_proj.weight", [64, 256], "float32"),
        ("aggregator.channel_proj.bias", [64], "float32"),
    ]
    key_list += [
        ("aggregator.row_proj.weight", [2, 400], "float32"),
        ("aggregator.row_proj.bias", [2], "float32"),
    ]
    return key_list


def test_the_file_decides_the_variant(tmp_path):
    path = write_official(official_state(small_variant_keys()), tmp_path / "small.ckpt")
    model, read, _ = load_as_user("mixvpr", path)  # no option given
    assert read.settings["model.options"] == {
        **FILE_OPTIONS,
        **{"backbone": "resnet18", "mix_depth": 2, "out_channels": 64, "out_rows": 2},
    }
    with torch.inference_mode():
        descriptor = model(fixture_input(320, 320))
    assert model.descriptor_dim == 128 and descriptor.shape == (2, 128)
    assert torch.allclose(descriptor.norm(dim=1), torch.ones(2))
    with pytest.raises(ConfigError, match=r"this input gives 4×4.*--image-size 320x320"):
        model(fixture_input(64, 64))


def test_an_option_contradicting_the_file_fails(loaded):
    read = loaded[1]
    for contradiction in ({"out_rows": 2}, {"backbone": "resnet18"}, {"mix_depth": 3}):
        with pytest.raises(ConfigError, match="contradicts the checkpoint"):
            resolve("paper", {"model.method": "mixvpr", "model.options": contradiction}, read.settings)
    agreeing = resolve("paper", {"model.method": "mixvpr", "model.options": {"out_rows": 4}}, read.settings)
    assert agreeing.model.options == FILE_OPTIONS
