"""``supervlad`` computes what the official SuperVLAD code computes, from the official files' layout (the
file decides the release: with the cross-image encoder, without it, 1-ClusterVLAD), and describes a batch
the way the official evaluation does.

Fixture (tests/data/supervlad, copied from the SuperVLAD reference fixture: Lu-Feng/SuperVLAD d994ba4 run
with the README's test arguments on weights rebuilt from each key name by the recipe, with its adjustments —
the assignment conv ×30, the first encoder layer's attention biases ×0.1): 4 images of the seed's noise at
322×322 described in ONE forward pass, and the same images described each alone and as [0, 1], [2, 3]; the
intermediates; the first 93 rows (class + 4 grid rows) of the interpolated position embedding; and
``variants/``: the two other releases' key lists and outputs (conv ×30 only). Here each state dict is
rebuilt the same way, saved as the authors' train.py saves it (with an optimizer, the epoch and numpy
recalls), read like a user's ``--checkpoint`` and run on the fixture's input.

Tolerance: every array ≤ 1e-4 of its own largest value. Measured: ≤ 7.2e-7, 0 for the position
embedding. Each mutation below misses the descriptor by ≥ 1e-2 of its scale.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

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
    reference,
    same_weights,
    write_training_checkpoint,
)
from zoo.models import _dinov2
from zoo.models._cross_image import describe_batch

from vpr_bench.api import CheckpointError, ConfigError, ModelConfig, build_method
from vpr_bench.api import resolve_config as resolve
from vpr_bench.testing import relative_error, run_cli

TOLERANCE = 1e-4  # relative to each array's largest value
MUTATION_FLOOR = 100 * TOLERANCE  # a mutation must miss by far more than the tolerance
CONV_FACTOR = {"aggregation.conv.weight": 30.0}
ADJUSTMENTS = {
    **CONV_FACTOR,
    "encoder.layers.0.self_attn.in_proj_bias": 0.1,
    "encoder.layers.0.self_attn.out_proj.bias": 0.1,
}
HEAD = 1 + 4 * 23  # the class row and the first 4 grid rows, as kept in the fixture


def run_captured(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    found = {}
    hooks = [
        model.backbone.register_forward_hook(lambda m, i, o: found.update(features=o[1])),
        model.encoder.layers[0].register_forward_hook(lambda m, i, o: found.update(encoder_layer0_out=o)),
        model.encoder.register_forward_hook(lambda m, i, o: found.update(encoder_out=o)),
    ]
    with torch.inference_mode():
        found["descriptor"] = model(images)
    for hook in hooks:
        hook.remove()
    return found


@pytest.fixture(scope="module")
def supervlad(tmp_path_factory):
    state = official_state(keys("supervlad"), ADJUSTMENTS)
    path = write_training_checkpoint(state, tmp_path_factory.mktemp("supervlad") / "SuperVLAD.pth")
    model, read, cfg = load_as_user("supervlad", path)
    path.unlink()
    return model, read, cfg, run_captured(model, fixture_input(322, 322, batch=4))


def test_the_file_computes_the_official_outputs(supervlad):
    model, read, cfg, found = supervlad
    describe = partial(describe_batch, model.encoder)  # one forward pass of the encoder
    assert read.description == "official SuperVLAD.pth"
    assert read.settings["model.options"] == {
        "backbone": "dinov2_vitb14", "clusters": 4, "ghost_clusters": 1, "encoder_layers": 2,
        "encoder_feedforward": 2048,
    }  # fmt: skip
    assert (cfg.data.image_size, cfg.data.preprocess, cfg.data.interpolation) == (
        (322, 322), "normalize-first", "bilinear"
    )  # fmt: skip
    assert cfg.eval.batch_size == 8 and model.batch_dependent and model.descriptor_dim == 3072
    aggregation, features = model.aggregation, found["features"]
    with torch.inference_mode():
        assignment = aggregation.soft_assign(features)
        agg_out = aggregation(features)
    clusters = agg_out.view(4, 4, -1)
    position = _dinov2.interpolated_position_embedding(
        model.backbone.vit.pos_embed, 23, 23, square_image=True
    )
    compared = {
        "descriptor": found["descriptor"],
        "descriptor_batch1": in_batches(describe, clusters, [0], [1], [2], [3]),
        "descriptor_batch2": in_batches(describe, clusters, [0, 1], [2, 3]),
        "backbone_pos_embed_interpolated_head": position[:, :HEAD],
        "agg_soft_assign": assignment,
        "agg_vlad_unnormalized": aggregation.cluster_sums(features, assignment),
        "agg_out": agg_out,
        "encoder_layer0_out": found["encoder_layer0_out"],
        "encoder_out": found["encoder_out"],
    }
    expected = reference("supervlad")
    assert set(compared) == set(expected)
    deviations = errors(compared, expected)
    assert max(deviations.values()) <= TOLERANCE, deviations
    reversed_order = in_batches(describe, clusters, [3, 2, 1, 0])  # the order within a batch does not matter
    assert relative_error(reversed_order, expected["descriptor"]) <= TOLERANCE


def test_mutations_miss_the_reference_by_far(supervlad):
    model, _, _, found = supervlad
    describe = partial(describe_batch, model.encoder)
    expected = reference("supervlad")["descriptor"]
    aggregation, features = model.aggregation, found["features"]
    with torch.inference_mode():
        clusters = aggregation(features).view(4, 4, -1)
        logits = aggregation.conv(F.normalize(features, dim=1)).flatten(2)  # (B, 5, n)
        normalised = F.normalize(features, dim=1).flatten(2)

        def described(assignment: torch.Tensor) -> torch.Tensor:
            sums = torch.einsum("bkn,bcn->bkc", assignment, normalised)
            return describe(F.normalize(F.normalize(sums, dim=2).flatten(1), dim=-1).view(4, 4, -1))

        mutations = {
            "each image alone": in_batches(describe, clusters, [0], [1], [2], [3]),
            "batches [0, 1], [2, 3]": in_batches(describe, clusters, [0, 1], [2, 3]),
            "no ghost cluster (softmax over the 4 clusters)": described(F.softmax(logits[:, :4], dim=1)),
            "the ghost is the first row": described(F.softmax(logits, dim=1)[:, 1:]),
            "softmax over the patches": described(F.softmax(logits, dim=2)[:, :4]),
            "no encoder": aggregation(features),
        }
    missed = {name: relative_error(value, expected) for name, value in mutations.items()}
    assert min(missed.values()) > MUTATION_FLOOR, missed


@pytest.mark.parametrize(
    "variant, options, descriptor_dim",
    [
        ("no_encoder", {"clusters": 4, "ghost_clusters": 1}, 3072),
        ("1cluster", {"clusters": 1, "ghost_clusters": 2}, 768),
    ],
)
def test_the_file_decides_the_release(supervlad, variant, options, descriptor_dim, tmp_path):
    """The two other releases: same backbone keys (so the fixture's features serve), no encoder."""
    model, _, _, found = supervlad
    fixture = f"supervlad/variants/{variant}"
    path = write_training_checkpoint(official_state(keys(fixture), CONV_FACTOR), tmp_path / "release.pth")
    released, read, cfg = load_as_user("supervlad", path)
    assert read.settings["model.options"] == {"backbone": "dinov2_vitb14", **options, "encoder_layers": 0}
    assert released.descriptor_dim == descriptor_dim and not released.batch_dependent
    assert released.encoder is None and cfg.eval.batch_size == 8  # the preset; unused: nothing mixes
    assert same_weights(released.backbone, model.backbone)
    with torch.inference_mode():
        compared = {
            "descriptor": released.aggregation(found["features"]),
            "agg_soft_assign": released.aggregation.soft_assign(found["features"]),
        }
    deviations = errors(compared, reference(fixture, "variant.npz"))
    assert max(deviations.values()) <= TOLERANCE, deviations


def test_an_option_contradicting_the_file_fails(supervlad):
    _, read, _, _ = supervlad
    with pytest.raises(ConfigError, match="clusters=8 contradicts the checkpoint"):
        resolve("paper", {"model.method": "supervlad", "model.options": {"clusters": 8}}, read.settings)
    with pytest.raises(ConfigError, match="encoder_layers=0 contradicts"):
        resolve("paper", {"model.method": "supervlad", "model.options": {"encoder_layers": 0}}, read.settings)


def test_a_wrong_file_fails_in_one_line(tmp_path):
    assert_a_foreign_file_fails_in_one_line("supervlad", tmp_path, "backbone.vit.cls_token")

    small = build_method_state("dinov2_vits14")
    incomplete = {k: v for k, v in small.items() if k != "backbone.cls_token"}
    with pytest.raises(CheckpointError, match="supervlad checkpoint but lacks 'backbone.cls_token'"):
        load_as_user("supervlad", write_training_checkpoint(incomplete, tmp_path / "SuperVLAD.pth"))


def build_method_state(backbone: str, **options) -> dict[str, torch.Tensor]:
    """A random SuperVLAD under the official names (``backbone.*`` and its ``mask_token``)."""
    torch.manual_seed(0)
    config = ModelConfig(method="supervlad", pretrained=False, options={"backbone": backbone, **options})
    ours = build_method(config).state_dict()
    width = ours["backbone.vit.cls_token"].shape[-1]
    official = {k.replace("backbone.vit.", "backbone."): v for k, v in ours.items()}
    return {**official, "backbone.mask_token": torch.zeros(1, width)}


def test_cli_evaluates_an_official_layout_file_with_the_official_batches(tmp_path, capsys):
    path = write_training_checkpoint(build_method_state("dinov2_vits14"), tmp_path / "supervlad_vits14.pth")
    code, out, err = run_cli(
        ["eval", "--method", "supervlad", "--dataset", "corridor", "--checkpoint", str(path),
         "--image-size", "42x42", "--num-workers", "0", "--device", "cpu", "--quiet"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1].split("record written to ")[1])
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["weights"] == f"checkpoint:{path} (supervlad, official layout)"
    assert record["cost"]["descriptor_dim"] == 4 * 384
    assert record["protocol"]["preprocess"] == "normalize-first" and record["protocol"]["image_size"] == [
        42,
        42,
    ]
    assert record["protocol"]["batching"]["batch_size"] == 8
    assert record["protocol"]["batching"]["database_and_queries"] == "separately"
    assert json.loads((run_dir / "config.json").read_text())["eval"]["batch_size"] == 8


@pytest.mark.parametrize("choice", ["", ":SuperVLAD-no-encoder.pth", ":1-ClusterVLAD.pth"])
def test_official_weights_name_their_google_drive_page_in_one_line(choice, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    code, _, err = run_cli(["eval", "--method", "supervlad", "--weights", f"official{choice}"], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "published on Google Drive (https://drive.google.com/file/d/" in err and "--checkpoint FILE" in err
