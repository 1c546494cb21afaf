"""``salad`` computes what the official DINOv2 SALAD code computes, from the official file's layout.

Fixture (tests/data/salad, copied from shared/data/reference_models/salad; see its README): outputs of
``hubconf.dinov2_salad`` (serizba/salad e593005, dinov2 b8931f7) with weights rebuilt from each key name
by the recipe (no adjustment). Here the state dict is rebuilt the same way, written as ``dino_salad.ckpt``
is (a flat ``VPRModel`` state dict), read like a user's ``--checkpoint``, and run on the fixture's input
(the seed's noise; the fixture does not store it).

Tolerance: every array ≤ 1e-4 of its own largest value (the project's bar for float32 re-implementations
whose summation order may differ). Measured: 0.0 for the backbone, scores, token features and transport
plan; ≈ 6e-7 for the cluster sums and ≈ 4e-7 for the descriptor (a matrix product where the official
code sums a broadcast product). The mutations below move the descriptor by ≥ 1e-2 of its scale.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import (
    assert_a_foreign_file_fails_in_one_line,
    errors,
    fixture_input,
    keys,
    load_as_user,
    official_state,
    reference,
    write_official,
)
from zoo.models import _dinov2

from vpr_bench.api import CheckpointError, ConfigError, ModelConfig, build_method
from vpr_bench.api import resolve_config as resolve
from vpr_bench.testing import relative_error

TOLERANCE = 1e-4  # relative to each array's largest value
MUTATION_FLOOR = 100 * TOLERANCE  # a mutation must miss by far more than the tolerance
SMALL = {"backbone": "dinov2_vits14", "clusters": 16, "cluster_dim": 32, "token_dim": 64, "hidden": 128}


@pytest.fixture(scope="module")
def salad(tmp_path_factory):
    path = write_official(official_state(keys("salad")), tmp_path_factory.mktemp("salad") / "dino_salad.ckpt")
    model, read, cfg = load_as_user("salad", path)
    path.unlink()
    images = fixture_input(322, 322)
    found = {}
    hook = model.backbone.register_forward_hook(lambda m, i, o: found.update(class_token=o[0], features=o[1]))
    with torch.inference_mode():
        found["descriptor"] = model(images)
    hook.remove()
    return model, read, cfg, images, found


@pytest.fixture(scope="module")
def small_official_state() -> dict[str, torch.Tensor]:
    """A ViT-S/14 SALAD with 16 clusters under the official ``VPRModel`` names (and its ``mask_token``)."""
    torch.manual_seed(0)
    ours = build_method(ModelConfig(method="salad", pretrained=False, options=SMALL)).state_dict()
    official = {k.replace("backbone.vit.", "backbone.model."): v for k, v in ours.items()}
    return {**official, "backbone.model.mask_token": torch.zeros(1, 384)}


def test_the_file_computes_the_official_outputs(salad):
    model, read, cfg, _, found = salad
    assert read.description == "official dino_salad.ckpt"
    assert read.settings["model.options"] == {
        "backbone": "dinov2_vitb14", "clusters": 64, "cluster_dim": 128, "token_dim": 256, "hidden": 512
    }  # fmt: skip
    assert (cfg.data.image_size, cfg.data.preprocess, cfg.data.interpolation) == (
        (322, 322), "resize-first", "bilinear"
    )  # fmt: skip
    assert model.descriptor_dim == 8448
    aggregator, features = model.aggregator, found["features"]
    with torch.inference_mode():
        token_features = aggregator.token_features(found["class_token"])
        log_plan = aggregator.log_transport(features)
        cluster_sums = aggregator.cluster_sums(features, log_plan)
        compared = {
            "descriptor": found["descriptor"],
            "backbone_cls_token": found["class_token"],
            "agg_scores": aggregator.score(features),
            "agg_token_features": token_features,
            "agg_log_transport": log_plan,
            "agg_vlad_unnormalized": cluster_sums,
            "descriptor_prenorm": torch.cat(
                [F.normalize(token_features, dim=-1), F.normalize(cluster_sums, dim=1).flatten(1)], dim=-1
            ),
        }
    expected = reference("salad")
    assert set(compared) == set(expected)
    deviations = errors(compared, expected)
    assert max(deviations.values()) <= TOLERANCE, deviations


def test_mutations_miss_the_reference_by_far(salad, monkeypatch):
    model, _, _, images, found = salad
    expected = reference("salad")["descriptor"]

    # clusters flattened before channels (index k·128 + c, not c·64 + k)
    with torch.inference_mode():
        aggregator, features = model.aggregator, found["features"]
        cluster_sums = aggregator.cluster_sums(features, aggregator.log_transport(features))
        token = F.normalize(aggregator.token_features(found["class_token"]), dim=-1)
        cluster_major = F.normalize(cluster_sums, dim=1).transpose(1, 2).flatten(1)
        mutated = F.normalize(torch.cat([token, cluster_major], dim=-1), dim=-1)
    assert relative_error(mutated, expected) > MUTATION_FLOOR

    # the backbone without its final LayerNorm (as BoQ runs it)
    with monkeypatch.context() as patched, torch.inference_mode():
        patched.setattr(model.backbone, "final_norm", False)
        assert relative_error(model(images), expected) > MUTATION_FLOOR


def _bicubic_matrix(size_in: int, size_out: int, scale: float) -> np.ndarray:
    """(size_out, size_in) weights of a bicubic resize by ``scale`` (Keys' cubic convolution, a = −0.75,
    half-pixel centres, source position (i + 0.5) / scale − 0.5, edge samples repeated): written from the
    textbook definition, independently of torch's kernel."""
    a = -0.75
    source = (np.arange(size_out) + 0.5) / scale - 0.5
    first = np.floor(source)
    t = source - first
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # noqa: E731  (|x| ≤ 1)
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # noqa: E731  (1 < |x| < 2)
    weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)
    matrix = np.zeros((size_out, size_in))
    for k in range(4):
        taps = np.clip(first + k - 1, 0, size_in - 1).astype(int)
        np.add.at(matrix, (np.arange(size_out), taps), weights[:, k])
    return matrix


def test_the_position_embedding_is_resized_as_dinov2_resizes_it():
    """dinov2 resizes the 37×37 grid by the scale factor (n + 0.1) / 37 per axis, and torch maps output
    pixels back with that factor; timm resizes to the size n × m. On the fixtures the difference moves the
    descriptors by only ≈ 2e-5 of their scale (random position embeddings are small next to the patch
    embeddings; measured against reference.npz's ``backbone_pos_embed_interpolated``: 0.0 for both), so it
    is checked here on the embedding itself, on a non-square grid."""
    grid = torch.randn(1, 37 * 37, 8, generator=torch.Generator().manual_seed(0))
    pos_embed = torch.cat([torch.ones(1, 1, 8), grid], dim=1)
    rows, cols = 23, 17
    found = _dinov2.interpolated_position_embedding(pos_embed, rows, cols, square_image=False)
    row_matrix = _bicubic_matrix(37, rows, (rows + 0.1) / 37)
    col_matrix = _bicubic_matrix(37, cols, (cols + 0.1) / 37)
    channels_first = grid.reshape(37, 37, 8).double().numpy()
    expected = np.einsum("ri,ijc,sj->rsc", row_matrix, channels_first, col_matrix).reshape(1, rows * cols, 8)
    assert torch.equal(found[:, :1], pos_embed[:, :1])  # the class token's embedding is kept
    assert relative_error(found[:, 1:], expected) <= TOLERANCE

    square = grid.reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    to_size = F.interpolate(square, size=(rows, cols), mode="bicubic", antialias=False)  # timm's way
    assert relative_error(to_size.permute(0, 2, 3, 1).reshape(1, -1, 8), expected) > MUTATION_FLOOR
    assert _dinov2.interpolated_position_embedding(pos_embed, 37, 37, square_image=True) is pos_embed


def test_the_file_decides_the_variant(small_official_state, tmp_path):
    path = write_official(small_official_state, tmp_path / "salad_vits14.ckpt")
    model, read, cfg = load_as_user("salad", path)  # no option given
    assert read.settings["model.options"] == SMALL
    assert cfg.data.image_size == (322, 322) and model.descriptor_dim == 64 + 16 * 32
    images = fixture_input(70, 84)  # a 5 × 6 patch grid: not square, position embedding resized
    with torch.inference_mode():
        descriptors = model(images)
    assert descriptors.shape == (2, model.descriptor_dim) and torch.isfinite(descriptors).all()
    with pytest.raises(ConfigError, match="more patches than its 16 clusters"), torch.inference_mode():
        model(fixture_input(56, 56))


def test_an_option_contradicting_the_file_fails(salad):
    _, read, _, _, _ = salad
    with pytest.raises(ConfigError, match="clusters=32 contradicts the checkpoint"):
        resolve("paper", {"model.method": "salad", "model.options": {"clusters": 32}}, read.settings)
    with pytest.raises(ConfigError, match="backbone=dinov2_vits14 contradicts"):
        resolve(
            "paper", {"model.method": "salad", "model.options": {"backbone": "dinov2_vits14"}}, read.settings
        )
    agreeing = resolve("paper", {"model.method": "salad", "model.options": {"token_dim": 256}}, read.settings)
    assert agreeing.model.options["cluster_dim"] == 128


def test_a_wrong_file_fails_in_one_line(small_official_state, tmp_path):
    assert_a_foreign_file_fails_in_one_line("salad", tmp_path, "backbone.vit.cls_token")

    incomplete = {k: v for k, v in small_official_state.items() if k != "aggregator.score.3.weight"}
    with pytest.raises(CheckpointError, match="salad checkpoint but lacks 'aggregator.score.3.weight'"):
        load_as_user("salad", write_official(incomplete, tmp_path / "dino_salad.ckpt"))
