"""``megaloc`` computes what the official MegaLoc code computes, from both official file layouts.

Fixture (tests/data/megaloc, from the reference fixture of that name; see its README): outputs of
``hubconf.get_trained_model`` (gmberton/MegaLoc 1af071c) with weights rebuilt from each key name by the
recipe and its two adjustments (``backbone.pos_embed`` ×1000, ``aggregator.linear.bias`` ×0.01).
``reference_small.npz`` is the fixture's; ``reference_extra.npz`` holds five more of its small arrays
(``reference.npz``'s salad outputs, linear outputs and class token of the other two inputs). Here the state
dict is rebuilt the same way, written as the current ``model.safetensors`` (safetensors, ``backbone.*``) and
as the legacy ``megaloc.torch`` (``torch.save``, ``backbone.model.*`` and an unused ``mask_token``, in
``keys_legacy.json``'s order), each read like a user's ``--checkpoint``, and run on the three inputs: 322×322,
224×308 (the position embedding of a non-square grid) and 231×330 (the model's own rounding to 224×336 and
antialiased resize).

Tolerance: every array within 1e-4 of its own largest value (the project's bar for float32
re-implementations). Measured: ≤ 2e-6 for every array (backbone ≈ 3e-7, transport plan ≈ 4e-7, cluster
sums ≈ 2e-6, descriptor ≈ 1.8e-6). The mutations move the 231×330 descriptor by 0.11 (ties rounded up,
rounded down), 0.14 (no resize) and 4.5e-3 (no antialias) of its scale.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from reference import (
    assert_a_foreign_file_fails_in_one_line,
    errors,
    fixture_input,
    keys,
    load_as_user,
    official_state,
    offline_downloads,
    reference,
    same_weights,
    write_official,
)
from safetensors.torch import load_file, save_file
from zoo.models import megaloc as megaloc_module

from vpr_bench.api import METHODS, CheckpointError, ConfigError, ModelConfig, build_method
from vpr_bench.api import resolve_config as resolve
from vpr_bench.testing import recipe_tensor, relative_error, run_cli

TOLERANCE = 1e-4  # relative to each array's largest value
MUTATION_FLOOR = 30 * TOLERANCE
ADJUST = {"backbone.pos_embed": 1000.0, "aggregator.linear.bias": 0.01}  # the README's A1 and A2
INPUTS = {"": (322, 322), "nonsquare_": (224, 308), "resize_": (231, 330)}  # array prefix → (H, W)
INPUTS_SHA256 = "6d55d3c7bbbb9b6491c237b7762b48f79e8ef604f672fb96915c760f88fa6b96"
OFFICIAL_OPTIONS = {
    "backbone": "dinov2_vitb14", "clusters": 64, "cluster_dim": 256, "token_dim": 256, "hidden": 512,
    "descriptor_dim": 8448,
}  # fmt: skip
SMALL = {
    "backbone": "dinov2_vits14", "clusters": 8, "cluster_dim": 32, "token_dim": 64, "hidden": 128,
    "descriptor_dim": 256,
}  # fmt: skip


@pytest.fixture(scope="module")
def official_files(tmp_path_factory) -> Iterator[dict[str, Path]]:
    """The recipe's state dict written as both official files (≈ 0.9 GB each), by file name."""
    folder = tmp_path_factory.mktemp("megaloc")
    state = official_state(keys("megaloc"), ADJUST)
    current = folder / "model.safetensors"
    save_file(state, str(current))
    legacy = {}
    for key, shape, dtype in keys("megaloc", "keys_legacy.json"):
        if key == "backbone.model.mask_token":  # never used; the fixture filled it by its own name
            legacy[key] = recipe_tensor(key, shape, dtype)
        else:
            legacy[key] = state[key.replace("backbone.model.", "backbone.", 1)]
        assert list(legacy[key].shape) == shape
    files = {"model.safetensors": current, "megaloc.torch": write_official(legacy, folder / "megaloc.torch")}
    del state, legacy
    yield files
    for path in files.values():  # pytest keeps the last runs' folders: not 1.8 GB each
        path.unlink()


@pytest.fixture(scope="module")
def megaloc(official_files):
    """The current file as a user loads it: (model, MethodCheckpoint without its state dict, RunConfig)."""
    model, read, cfg = load_as_user("megaloc", official_files["model.safetensors"])
    read.state_dict = {}  # the model holds the weights; 0.9 GB less for the rest of the module
    return model, read, cfg


def run_with_intermediates(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The descriptor and the fixture's intermediates on the way (its names, without the input prefix)."""
    found = {}
    hooks = [
        model.backbone.register_forward_hook(lambda m, i, o: found.update(class_token=o[0], features=o[1])),
        model.aggregator.register_forward_hook(lambda m, i, o: found.update(agg_salad_out=o)),
        model.fc.register_forward_hook(lambda m, i, o: found.update(descriptor_prenorm=o)),
    ]
    with torch.inference_mode():
        descriptor = model(images)
        aggregator, features = model.aggregator, found["features"]
        log_plan = aggregator.log_transport(features)
        compared = {
            "descriptor": descriptor,
            "descriptor_prenorm": found["descriptor_prenorm"],
            "agg_salad_out": found["agg_salad_out"],
            "backbone_cls_token": found["class_token"],
            "agg_token_features": aggregator.token_features(found["class_token"]),
            "agg_log_transport": log_plan,
            "agg_vlad_unnormalized": aggregator.cluster_sums(features, log_plan),
        }
    for hook in hooks:
        hook.remove()
    return compared


def expected_arrays(prefix: str) -> dict:
    """The fixture's arrays of one input (``prefix``), under their names without it."""
    arrays = {**reference("megaloc"), **reference("megaloc", "reference_extra.npz")}
    others = tuple(p for p in INPUTS if p and p != prefix)
    return {
        key[len(prefix) :]: value
        for key, value in arrays.items()
        if key.startswith(prefix) and not key.startswith(others)
    }


@pytest.mark.parametrize("prefix", list(INPUTS))
def test_the_file_computes_the_official_outputs(megaloc, prefix):
    model, read, cfg = megaloc
    assert read.description == "official model.safetensors"
    assert read.settings["model.options"] == OFFICIAL_OPTIONS and model.descriptor_dim == 8448
    # the official evaluation's preprocessing, the record's protocol: native size, then the model's rounding
    assert (cfg.data.image_size, cfg.data.preprocess) == ((0, 0), "tensor-resize-first")
    expected = expected_arrays(prefix)
    found = run_with_intermediates(model, fixture_input(*INPUTS[prefix]))
    found = {key: value for key, value in found.items() if key in expected}
    assert set(found) == set(expected)  # every array the fixture gives for this input
    deviations = errors(found, expected)
    assert max(deviations.values()) <= TOLERANCE, deviations


def test_the_legacy_file_loads_the_same_weights(official_files, megaloc):
    legacy, read, cfg = load_as_user("megaloc", official_files["megaloc.torch"])
    assert read.description == "official megaloc.torch"
    assert read.settings["model.options"] == OFFICIAL_OPTIONS and cfg.data.image_size == (0, 0)
    assert same_weights(legacy, megaloc[0])


@pytest.mark.parametrize(
    ("name", "mutated"),
    [
        pytest.param("patch_multiple", lambda side: math.floor(side / 14 + 0.5) * 14, id="ties-up-238x336"),
        pytest.param("patch_multiple", lambda side: side // 14 * 14, id="rounded-down-224x322"),
        pytest.param("RESIZE_ANTIALIAS", False, id="resized-without-antialias"),
        pytest.param("resized_to_patches", lambda images: images, id="not-resized"),
    ],
)
def test_a_wrong_size_handling_misses_the_reference_by_far(megaloc, monkeypatch, name, mutated):
    monkeypatch.setattr(megaloc_module, name, mutated)
    with torch.inference_mode():
        descriptor = megaloc[0](fixture_input(*INPUTS["resize_"]))
    assert relative_error(descriptor, expected_arrays("resize_")["descriptor"]) > MUTATION_FLOOR


def test_the_inputs_are_the_fixtures():
    """The README's sha256 of the three normalised inputs, concatenated as float32 bytes."""
    data = b"".join(fixture_input(*size).numpy().tobytes() for size in INPUTS.values())
    assert hashlib.sha256(data).hexdigest() == INPUTS_SHA256


def test_the_size_is_rounded_as_python_rounds():
    assert [megaloc_module.patch_multiple(side) for side in (224, 231, 245, 330, 120, 160)] == [
        224, 224, 252, 336, 126, 154
    ]  # fmt: skip
    images = torch.zeros(1, 3, 231, 330)
    assert megaloc_module.resized_to_patches(images).shape[-2:] == (224, 336)
    kept = torch.zeros(1, 3, 224, 308)
    assert megaloc_module.resized_to_patches(kept) is kept


@pytest.fixture(scope="module")
def small_official_file(tmp_path_factory):
    """A ViT-S/14 MegaLoc with 8 clusters and a 256-d output, written as ``model.safetensors`` is."""
    torch.manual_seed(0)
    ours = build_method(ModelConfig(method="megaloc", pretrained=False, options=SMALL)).state_dict()
    path = tmp_path_factory.mktemp("small") / "megaloc_vits14.safetensors"
    save_file({official_name(k): v.contiguous() for k, v in ours.items()}, str(path))
    return path


def official_name(key: str) -> str:
    """Our key → the current official file's (the inverse of the conversion)."""
    for ours, theirs in (
        ("backbone.vit.", "backbone."),
        ("aggregator.", "aggregator.agg."),
        ("fc.", "aggregator.linear."),
    ):
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    return key


def test_the_file_decides_the_variant(small_official_file):
    model, read, cfg = load_as_user("megaloc", small_official_file)  # no option given
    assert read.settings["model.options"] == SMALL and model.descriptor_dim == 256
    assert read.description.endswith("(megaloc, official layout)")
    with torch.inference_mode():
        descriptors = model(fixture_input(75, 88))  # rounded to 70×84: 5×6 patches, not square
        assert descriptors.shape == (2, 256) and torch.isfinite(descriptors).all()
        with pytest.raises(ConfigError, match="more than 8 patches of 14 px, got 2×3 for a 28×42 input"):
            model(fixture_input(30, 40))


def test_an_option_contradicting_the_file_fails(megaloc, small_official_file, capsys):
    _, read, _ = megaloc
    with pytest.raises(ConfigError, match="descriptor_dim=4096 contradicts the checkpoint"):
        resolve(
            "paper", {"model.method": "megaloc", "model.options": {"descriptor_dim": 4096}}, read.settings
        )
    agreeing = {"model.method": "megaloc", "model.options": {"clusters": 64}}
    assert resolve("paper", agreeing, read.settings).model.options == OFFICIAL_OPTIONS
    args = ["eval", "--method", "megaloc", "--checkpoint", str(small_official_file)]
    code, _, err = run_cli([*args, "--model-option", "clusters=64", "--dataset", "corridor"], capsys)
    assert (
        code != 0 and "clusters=64 contradicts the checkpoint" in err and len(err.strip().splitlines()) == 1
    )


def test_a_wrong_file_fails_in_one_line(small_official_file, tmp_path):
    assert_a_foreign_file_fails_in_one_line("megaloc", tmp_path, "backbone.vit.cls_token")
    incomplete = {k: v for k, v in load_file(str(small_official_file)).items() if "linear.weight" not in k}
    save_file(incomplete, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="megaloc checkpoint but lacks 'aggregator.linear.weight'"):
        load_as_user("megaloc", tmp_path / "model.safetensors")


def test_official_weights_fetch_the_authors_files(monkeypatch, tmp_path, small_official_file):
    """``--weights official`` is the current Hugging Face file, ``official:megaloc.torch`` the legacy
    release; both kept in the torch hub cache (offline: the mapping, not the download)."""
    urls = offline_downloads(monkeypatch, tmp_path)
    spec = METHODS.get("megaloc").spec
    current, legacy = spec.fetch_weights(None), spec.fetch_weights("megaloc.torch")
    assert urls == [
        "https://huggingface.co/gberton/MegaLoc/resolve/main/model.safetensors",
        "https://github.com/gmberton/MegaLoc/releases/download/v1.0/megaloc.torch",
    ]
    assert (current, legacy) == (
        tmp_path / "checkpoints" / "gberton_MegaLoc_model.safetensors",
        tmp_path / "checkpoints" / "megaloc.torch",
    )
    read = spec.checkpoint_reader(load_file(str(small_official_file)), current)
    assert read.description == "official model.safetensors"
    with pytest.raises(ConfigError, match="publishes model.safetensors, megaloc.torch"):
        spec.fetch_weights("megaloc.pth")


def test_eval_on_the_corridor_from_the_cli(small_official_file, tmp_path, capsys):
    """``vpr-bench eval --method megaloc --checkpoint FILE --dataset corridor``: a small file of the
    official layout at a small size (45×54, which the model rounds to 42×56), to stay fast."""
    args = ["eval", "--method", "megaloc", "--checkpoint", str(small_official_file), "--dataset", "corridor"]
    options = "--image-size 45x54 --eval-batch-size 8 --device cpu --num-workers 0 --quiet".split()
    code, _, err = run_cli([*args, *options, "--out", str(tmp_path)], capsys)
    assert code == 0, err
    (metrics,) = tmp_path.glob("corridor/megaloc/*/metrics.json")
    record = json.loads(metrics.read_text())
    assert record["weights"] == f"checkpoint:{small_official_file} (megaloc, official layout)"
    assert record["cost"]["descriptor_dim"] == 256 and record["protocol"]["num_queries_evaluated"] == 111
    protocol = {k: record["protocol"][k] for k in ("image_size", "preprocess", "interpolation")}
    assert protocol == {
        "image_size": [45, 54],
        "preprocess": "tensor-resize-first",
        "interpolation": "bilinear",
    }


def test_list_shows_the_published_figures(capsys):
    code, out, _ = run_cli(["list"], capsys)
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("megaloc:"))
    assert code == 0 and "8448-d, input native" in lines[at]
    source = "paper Table 1, R@10 95.8; secondhand: quoted in gmberton/VPR-methods-evaluation issue 19"
    assert f"msls-val 91.0† ({source})" in lines[at + 2]  # under "published R@1/R@5 (%; †: …)"
