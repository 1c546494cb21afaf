"""``cricavpr`` computes what the official CricaVPR code computes, from the official file's layout, and
describes a batch the way the official evaluation does.

Fixture (tests/data/cricavpr, copied from the CricaVPR reference fixture: Lu-Feng/CricaVPR f53e941 run on
weights rebuilt from each key name by the recipe, with its adjustments — GeM p set to 3, the first encoder
layer's attention biases ×0.1): 4 images of the seed's noise at 224×224 described in ONE forward pass, and
the same images described each alone and as [0, 1], [2, 3]. Kept of it (1.4 MB): the descriptors, the class
token, the encoder's input tokens and its layers' outputs, and the first 65 rows (class + 4 grid rows) of
the interpolated position embedding and of image 0's block-0 adapter output (a BatchNorm or class-row
mistake shows there, not in the descriptor). Here the state dict is rebuilt the same way, saved as the
authors' train.py saves it (with an optimizer, the epoch and numpy recalls), read like a user's
``--checkpoint`` and run on the fixture's input.

Tolerance: every array ≤ 1e-4 of its own largest value. Measured: ≤ 1.7e-6 (the attention's float
rounding), 0 for the position embedding. Each mutation below misses its array by ≥ 1e-2 of its scale.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import (
    assert_a_foreign_file_fails_in_one_line,
    errors,
    fixture_input,
    in_batches,
    keys,
    load_as_user,
    official_state,
    offline_downloads,
    reference,
    write_official,
    write_training_checkpoint,
)
from torchvision import transforms
from zoo.models import _dinov2, cricavpr
from zoo.models._cross_image import describe_batch

from vpr_bench.api import METHODS, CheckpointError, ConfigError, ModelConfig, build_method, load_split
from vpr_bench.api import resolve_config as resolve
from vpr_bench.testing import load_rgb, relative_error, run_cli

TOLERANCE = 1e-4  # relative to each array's largest value
MUTATION_FLOOR = 100 * TOLERANCE  # a mutation must miss by far more than the tolerance
ADJUSTMENTS = {
    "encoder.layers.0.self_attn.in_proj_bias": 0.1,
    "encoder.layers.0.self_attn.out_proj.bias": 0.1,
}
HEAD = 1 + 4 * 16  # the class row and the first 4 grid rows, as kept in the fixture


def gem_p_three(key: str, value: torch.Tensor) -> torch.Tensor:
    """The fixture's stated change: GeM's p set to 3 (the recipe's −0.04 turns GeM into a minimum)."""
    return torch.full_like(value, 3.0) if key == "aggregation.1.p" else value


def run_captured(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The descriptor of ``images`` in one pass, and what the forward hooks catch on the way."""
    found = {}
    hooks = [
        model.backbone.register_forward_hook(lambda m, i, o: found.update(class_token=o[0], features=o[1])),
        model.backbone.adapters[0].register_forward_hook(
            lambda m, i, o: found.update(adapter_input=i, block0_adapter=o)
        ),
        model.encoder.layers[0].register_forward_hook(lambda m, i, o: found.update(encoder_layer0_out=o)),
        model.encoder.register_forward_hook(lambda m, i, o: found.update(encoder_out=o)),
    ]
    with torch.inference_mode():
        found["descriptor"] = model(images)
        found["tokens"] = model.image_tokens(found["class_token"], found["features"])
    for hook in hooks:
        hook.remove()
    return found


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    state = official_state(keys("cricavpr"), ADJUSTMENTS, change=gem_p_three)
    path = write_training_checkpoint(state, tmp_path_factory.mktemp("cricavpr") / "CricaVPR.pth")
    yield path
    path.unlink()


@pytest.fixture(scope="module")
def crica(official_file):
    model, read, cfg = load_as_user("cricavpr", official_file)
    return model, read, cfg, run_captured(model, fixture_input(224, 224, batch=4))


def test_the_file_computes_the_official_outputs(crica):
    model, read, cfg, found = crica
    describe = partial(describe_batch, model.encoder)  # one forward pass of the encoder
    assert read.description == "official CricaVPR.pth"
    assert read.settings["model.options"] == {
        "backbone": "dinov2_vitb14", "encoder_layers": 2, "encoder_feedforward": 2048
    }  # fmt: skip
    assert (cfg.data.image_size, cfg.data.preprocess, cfg.data.interpolation) == (
        (224, 224), "normalize-first", "bilinear"
    )  # fmt: skip
    assert cfg.eval.batch_size == 16 and model.batch_dependent and model.descriptor_dim == 10752
    tokens = found["tokens"]
    position = _dinov2.interpolated_position_embedding(
        model.backbone.vit.pos_embed, 16, 16, square_image=True
    )
    compared = {
        "descriptor": found["descriptor"],
        "descriptor_batch1": in_batches(describe, tokens, [0], [1], [2], [3]),
        "descriptor_batch2": in_batches(describe, tokens, [0, 1], [2, 3]),
        "backbone_pos_embed_interpolated_head": position[:, :HEAD],
        "backbone_block0_adapter_head": found["block0_adapter"][:1, :HEAD],
        "backbone_cls_token": found["class_token"],
        "agg_tokens": tokens,
        "encoder_layer0_out": found["encoder_layer0_out"],
        "encoder_out": found["encoder_out"],
    }
    expected = reference("cricavpr")
    assert set(compared) == set(expected)
    deviations = errors(compared, expected)
    assert max(deviations.values()) <= TOLERANCE, deviations
    # the order of the images within a batch does not matter (no positional encoding)
    reversed_order = in_batches(describe, tokens, [3, 2, 1, 0])
    assert relative_error(reversed_order, expected["descriptor"]) <= TOLERANCE


def test_mutations_miss_the_reference_by_far(crica, monkeypatch):
    model, _, _, found = crica
    describe = partial(describe_batch, model.encoder)
    expected, tokens = reference("cricavpr"), found["tokens"]

    # the batch: each image alone, or two passes of two, instead of the one pass of four
    for batches in (([0], [1], [2], [3]), ([0, 1], [2, 3])):
        assert relative_error(in_batches(describe, tokens, *batches), expected["descriptor"]) > MUTATION_FLOOR

    # the encoder attends over the 14 tokens of each image (a batch_first mix-up), not across the images
    with torch.inference_mode():
        within_images = F.normalize(model.encoder(tokens.transpose(0, 1)).transpose(0, 1).flatten(1), dim=-1)
    assert relative_error(within_images, expected["descriptor"]) > MUTATION_FLOOR

    # the 3×3 regions split at 0:5, 5:10, 10:16 (not 5:11, 11:16)
    even = {2: [(0, 8), (8, 16)], 3: [(0, 5), (5, 10), (10, 16)]}
    with monkeypatch.context() as patched, torch.inference_mode():
        patched.setattr(cricavpr, "region_bounds", lambda size, parts: even[parts])
        mutated = model.image_tokens(found["class_token"], found["features"])
    regional = expected["agg_tokens"][:, 1:]  # at their own scale (norm ≈ 0.9; the class token's ≈ 28)
    assert relative_error(mutated[:, 1:], regional) > MUTATION_FLOOR

    # the adapter: its class row passed once (not doubled by the residual): up(h_cls), not up(2·h_cls)
    adapter, (normed, rows, cols) = model.backbone.adapters[0], found["adapter_input"]
    with torch.inference_mode():
        correct = adapter(normed, rows, cols)
        class_once = correct[:, 0] - F.linear(F.relu(adapter.down(normed[:, 0])), adapter.up.weight)
        mutated = torch.cat([class_once[:, None], correct[:, 1:]], dim=1)
    assert relative_error(mutated[:1, :HEAD], expected["backbone_block0_adapter_head"]) > MUTATION_FLOOR


def _official_names(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our CricaVPR state dict under the official names (the inverse of ``convert_official``)."""
    official = {}
    for key, value in ours.items():
        key = key.replace("backbone.vit.", "backbone.")
        if key.startswith("backbone.adapters."):
            index, rest = key.removeprefix("backbone.adapters.").split(".", 1)
            rest = rest.replace("down.", "D_fc1.").replace("up.", "D_fc2.")
            key = f"backbone.blocks.{index}.adapter.{rest}"
        official[key] = value
    official["aggregation.1.p"] = official.pop("gem.p").reshape(1)
    return official


@pytest.fixture(scope="module")
def small_official_state() -> dict[str, torch.Tensor]:
    """A ViT-S/14 CricaVPR with a 1-layer encoder under the official names (and its ``mask_token``)."""
    torch.manual_seed(0)
    options = {"backbone": "dinov2_vits14", "encoder_layers": 1, "encoder_feedforward": 64}
    ours = build_method(ModelConfig(method="cricavpr", pretrained=False, options=options)).state_dict()
    return {**_official_names(ours), "backbone.mask_token": torch.zeros(1, 384)}


def test_the_file_decides_the_variant(small_official_state, tmp_path):
    path = write_official(small_official_state, tmp_path / "cricavpr_vits14.pth")  # a flat state dict
    model, read, cfg = load_as_user("cricavpr", path)  # no option given
    assert read.settings["model.options"] == {
        "backbone": "dinov2_vits14", "encoder_layers": 1, "encoder_feedforward": 64
    }  # fmt: skip
    assert read.description == f"checkpoint:{path} (cricavpr, official layout)"
    assert model.descriptor_dim == 14 * 384 and cfg.eval.batch_size == 16
    assert torch.equal(model.gem.p, small_official_state["aggregation.1.p"][0])
    with torch.inference_mode():  # a 4×5 grid: regions split at round(i·n/k), position embedding resized
        descriptors = model(fixture_input(56, 70, batch=3))
    assert descriptors.shape == (3, 14 * 384) and torch.isfinite(descriptors).all()
    with pytest.raises(ConfigError, match="need a patch grid of 3×3"), torch.inference_mode():
        model(fixture_input(28, 56))


def test_an_option_contradicting_the_file_fails(crica):
    _, read, _, _ = crica
    with pytest.raises(ConfigError, match="backbone=dinov2_vits14 contradicts the checkpoint"):
        resolve(
            "paper",
            {"model.method": "cricavpr", "model.options": {"backbone": "dinov2_vits14"}},
            read.settings,
        )
    agreeing = resolve("paper", {"model.method": "cricavpr", "eval.batch_size": 1}, read.settings)
    assert agreeing.eval.batch_size == 1  # one image at a time: a flag, not a contradiction


def test_a_wrong_file_fails_in_one_line(small_official_state, tmp_path):
    assert_a_foreign_file_fails_in_one_line("cricavpr", tmp_path, "backbone.vit.cls_token")

    no_encoder = {k: v for k, v in small_official_state.items() if not k.startswith("encoder.")}
    with pytest.raises(CheckpointError, match=r"cricavpr checkpoint but lacks 'encoder\.layers\.0\.\*"):
        load_as_user("cricavpr", write_official(no_encoder, tmp_path / "CricaVPR.pth"))


@pytest.fixture(scope="module")
def small_file(small_official_state, tmp_path_factory) -> Path:
    return write_training_checkpoint(
        small_official_state, tmp_path_factory.mktemp("small") / "cricavpr_vits14.pth"
    )


def official_batches(model, paths: list, size: int, batch_size: int) -> np.ndarray:
    """The descriptors of ``paths`` as the official test computes them: its preprocessing written out
    (ToTensor → Normalize → tensor resize, bilinear, no antialias), then batches of ``batch_size`` in
    order, the last partial. The per-image part (backbone, tokens) runs once for every batching."""
    transform = transforms.Compose([
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        transforms.Resize((size, size), transforms.InterpolationMode.BILINEAR, antialias=False),
    ])  # fmt: skip
    images = torch.stack([transform(load_rgb(path)) for path in paths])
    with torch.inference_mode():
        tokens = torch.cat(
            [model.image_tokens(*model.backbone(images[i : i + 16])) for i in range(0, len(images), 16)]
        )
        batches = range(0, len(tokens), batch_size)
        return torch.cat([describe_batch(model.encoder, tokens[i : i + batch_size]) for i in batches]).numpy()


def test_cli_ranks_with_the_official_batches(small_file, capsys):
    """``vpr-bench eval`` on an official-layout file: the record names its batches, and the distances it
    ranked by are those of the official test's batches — the database, then the queries, in the dataset's
    order, by 16, the last partial — not those of batches of 8."""
    code, out, err = run_cli(
        ["eval", "--method", "cricavpr", "--dataset", "corridor", "--checkpoint", str(small_file),
         "--image-size", "56x56", "--num-workers", "0", "--device", "cpu", "--quiet"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1].split("record written to ")[1])
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["weights"] == f"checkpoint:{small_file} (cricavpr, official layout)"
    assert (
        record["protocol"]["image_size"] == [56, 56] and record["protocol"]["preprocess"] == "normalize-first"
    )
    assert record["protocol"]["batching"] == {
        "batch_dependent": True, "batch_size": 16, "database_and_queries": "separately", "order": "dataset",
        "last_batch": "partial, kept", "one_image_at_a_time": False,
    }  # fmt: skip
    assert json.loads((run_dir / "config.json").read_text())["eval"]["batch_size"] == 16

    ranked = np.load(run_dir / "predictions.npz")
    model, _, cfg = load_as_user("cricavpr", small_file, **{"data.dataset": "corridor"})
    _, split = load_split(cfg.data, "test")
    for batch_size, official in ((16, True), (8, False)):
        database = official_batches(model, split.database_paths, 56, batch_size)
        queries = official_batches(model, split.query_paths, 56, batch_size)[ranked["query_index"]]
        distances = ((queries[:, None] - database[ranked["predictions"]]) ** 2).sum(-1)  # (Q, K) squared L2
        error = relative_error(ranked["distances"], distances)
        assert error <= TOLERANCE if official else error > MUTATION_FLOOR, (batch_size, error)


def test_official_weights_fetch_the_release(monkeypatch, tmp_path):
    """``--weights official``: the release file hubconf.trained_model loads, kept in the torch hub cache
    (offline: the mapping, not the download)."""
    urls = offline_downloads(monkeypatch, tmp_path)
    assert METHODS.get("cricavpr").spec.fetch_weights(None) == tmp_path / "checkpoints" / "CricaVPR.pth"
    assert urls == ["https://github.com/Lu-Feng/CricaVPR/releases/download/v1.0/CricaVPR.pth"]
