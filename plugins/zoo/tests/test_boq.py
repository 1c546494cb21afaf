"""``boq`` computes what the official Bag-of-Queries code computes, from the official files' layout.

Fixtures (tests/data/boq_resnet50 and boq_dinov2, copied from shared/data/reference_models; see their
READMEs): outputs of ``hubconf.get_trained_boq`` (amaralibey/Bag-of-Queries 1a4965e, dinov2 b8931f7) with
weights rebuilt from each key name by the recipe (ResNet-50: adjustments R1–R3). Here the state dicts are
rebuilt the same way, written as the release files are (flat ``VPRModel`` state dicts), read like a user's
``--checkpoint``, and run on the fixtures' input (the seed's noise; the fixtures do not store it).

Tolerance: every array ≤ 1e-4 of its own largest value (the project's bar for float32 re-implementations
whose summation order may differ). Measured: 0.0 for every array of both fixtures (bit-identical: the same
torch kernels run in the same order). The mutations below move the descriptor by ≥ 1e-2 of its scale.
"""

from __future__ import annotations

import math
import zlib

import pytest
import torch
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
from zoo.models.boq import BoQBlock

from vpr_bench.api import CheckpointError, ConfigError, ModelConfig, build_method
from vpr_bench.api import resolve_config as resolve
from vpr_bench.testing import relative_error

TOLERANCE = 1e-4  # relative to each array's largest value
MUTATION_FLOOR = 100 * TOLERANCE  # a mutation must miss by far more than the tolerance


def resnet_adjustments(key: str, value: torch.Tensor) -> torch.Tensor:
    """The boq_resnet50 README's R1–R3 (the plain recipe made the aggregation collapse)."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith(".queries"):  # R1: not scaled
        return torch.randn(value.shape, generator=g)
    if key == "aggregator.proj_c.weight":  # R2: zero-sum 3×3 kernels
        weight = torch.randn(value.shape, generator=g) / math.sqrt(1024 * 3 * 3)
        return weight - weight.mean(dim=(2, 3), keepdim=True)
    if key.endswith("cross_attn.in_proj_weight"):  # R3: query rows × 4
        weight = torch.randn(value.shape, generator=g) / math.sqrt(512)
        weight[:512] *= 4.0
        return weight
    return value


def run_captured(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The descriptor and the aggregator's intermediates, caught by forward hooks."""
    found = {}
    aggregator = model.aggregator
    hooks = [
        model.backbone.register_forward_hook(lambda m, i, o: found.update(features=o[-1])),
        aggregator.query_to_rows.register_forward_hook(lambda m, i, o: found.update(rows=o)),
    ]
    for b, block in enumerate(aggregator.blocks):
        hooks.append(
            block.cross_attn.register_forward_hook(lambda m, i, o, b=b: found.update({f"attn_{b}": o[1]}))
        )
        hooks.append(
            block.output_norm.register_forward_hook(lambda m, i, o, b=b: found.update({f"out_{b}": o}))
        )
    with torch.inference_mode():
        found["descriptor"] = model(images)
    for hook in hooks:
        hook.remove()
    return found


@pytest.fixture(scope="module")
def resnet_state() -> dict[str, torch.Tensor]:
    return official_state(keys("boq_resnet50"), change=resnet_adjustments)


@pytest.fixture(scope="module")
def resnet_file(resnet_state, tmp_path_factory):
    path = write_official(resnet_state, tmp_path_factory.mktemp("boq") / "resnet50_16384.pth")
    yield path
    path.unlink()


@pytest.fixture(scope="module")
def resnet(resnet_file):
    model, read, cfg = load_as_user("boq", resnet_file)
    return model, read, cfg, run_captured(model, fixture_input(384, 384))


@pytest.fixture(scope="module")
def dinov2(tmp_path_factory):
    path = write_official(
        official_state(keys("boq_dinov2")), tmp_path_factory.mktemp("boq") / "dinov2_12288.pth"
    )
    model, read, cfg = load_as_user("boq", path)
    path.unlink()
    return model, read, cfg, run_captured(model, fixture_input(322, 322))


def test_resnet50_file_computes_the_official_outputs(resnet):
    model, read, cfg, found = resnet
    assert read.description == "official resnet50_16384.pth"
    assert read.settings["model.options"] == {
        "backbone": "resnet50", "channels": 512, "queries": 64, "blocks": 2, "rows": 32
    }  # fmt: skip
    assert (cfg.data.image_size, cfg.data.preprocess, cfg.data.interpolation) == (
        (384, 384), "tensor-resize-first", "bicubic"
    )  # fmt: skip
    assert model.descriptor_dim == 16384
    compared = {
        "descriptor": found["descriptor"],
        "agg_prenorm": found["rows"].flatten(1),
        "attn_0": found["attn_0"],
        "attn_1": found["attn_1"],
    }
    expected = reference("boq_resnet50")
    assert set(compared) == set(expected)
    deviations = errors(compared, expected)
    assert max(deviations.values()) <= TOLERANCE, deviations


def test_dinov2_file_computes_the_official_outputs(dinov2):
    model, read, cfg, found = dinov2
    assert read.description == "official dinov2_12288.pth"
    assert read.settings["model.options"] == {
        "backbone": "dinov2_vitb14", "channels": 384, "queries": 64, "blocks": 2, "rows": 32
    }  # fmt: skip
    assert cfg.data.image_size == (322, 322) and model.descriptor_dim == 12288
    compared = {
        "descriptor": found["descriptor"],
        "descriptor_prenorm": found["rows"].flatten(1),
        "agg_fc_out": found["rows"],
        **{f"agg_boq{b}_{part}": found[f"{part}_{b}"] for b in (0, 1) for part in ("out", "attn")},
    }
    expected = reference("boq_dinov2")
    assert set(compared) == set(expected)
    deviations = errors(compared, expected)
    assert max(deviations.values()) <= TOLERANCE, deviations


def test_mutations_miss_the_reference_by_far(resnet, dinov2, monkeypatch):
    # ResNet-50: rows flattened before channels (index r·C + c, not c·rows + r)
    _, _, _, found = resnet
    row_major = torch.nn.functional.normalize(found["rows"].transpose(1, 2).flatten(1), dim=-1)
    assert relative_error(row_major, reference("boq_resnet50")["descriptor"]) > MUTATION_FLOOR

    # ResNet-50: the queries attend to the block's input tokens, not to the encoder's output
    model, _, _, found = resnet

    def attend_unencoded(self, tokens):
        queries = self.queries.expand(len(tokens), -1, -1)
        queries = self.query_norm(queries + self.query_self_attn(queries, queries, queries)[0])
        outputs, attention = self.cross_attn(queries, tokens, tokens)
        return self.encoder(tokens), self.output_norm(outputs), attention

    with monkeypatch.context() as patched, torch.inference_mode():
        patched.setattr(BoQBlock, "forward", attend_unencoded)
        mutated = model.aggregator(found["features"])
    assert relative_error(mutated, reference("boq_resnet50")["descriptor"]) > MUTATION_FLOOR

    # DINOv2: 8 heads in the encoder and the query self-attention (release commit 5ecf256, not HEAD)
    model, _, _, found = dinov2
    expected = reference("boq_dinov2")["descriptor"]
    with monkeypatch.context() as patched, torch.inference_mode():
        for block in model.aggregator.blocks:
            patched.setattr(block.encoder.self_attn, "num_heads", 8)
            patched.setattr(block.query_self_attn, "num_heads", 8)
        assert relative_error(model.aggregator(found["features"]), expected) > MUTATION_FLOOR
    with torch.inference_mode():
        assert torch.equal(model.aggregator(found["features"]), found["descriptor"])  # heads restored

    # DINOv2: the backbone's final LayerNorm applied (BoQ skips it; SALAD uses it)
    with monkeypatch.context() as patched, torch.inference_mode():
        patched.setattr(model.backbone, "final_norm", True)
        assert relative_error(model(fixture_input(322, 322)), expected) > MUTATION_FLOOR


def _official_names(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our ResNet BoQ state dict under the official ``VPRModel`` names (the inverse of the conversion)."""
    renames = [
        ("backbone.conv1.", "backbone.net.0."), ("backbone.bn1.", "backbone.net.1."),
        ("backbone.layer1.", "backbone.net.4."), ("backbone.layer2.", "backbone.net.5."),
        ("backbone.layer3.", "backbone.net.6."), ("aggregator.project.", "aggregator.proj_c."),
        ("aggregator.input_norm.", "aggregator.norm_input."), ("aggregator.query_to_rows.", "aggregator.fc."),
        (".query_self_attn.", ".self_attn."), (".query_norm.", ".norm_q."), (".output_norm.", ".norm_out."),
        ("aggregator.blocks.", "aggregator.boqs."),
    ]  # fmt: skip
    official = {}
    for key, value in ours.items():
        for mine, theirs in renames:
            key = key.replace(mine, theirs)
        official[key] = value
    return official


def test_the_file_decides_the_variant(tmp_path):
    options = {"backbone": "resnet18", "channels": 128, "queries": 8, "blocks": 1, "rows": 4}
    torch.manual_seed(0)
    original = build_method(ModelConfig(method="boq", pretrained=False, options=options)).eval()
    path = write_official(_official_names(original.state_dict()), tmp_path / "resnet18_512.pth")
    model, read, cfg = load_as_user("boq", path)  # no option given
    assert read.settings["model.options"] == options
    assert cfg.data.image_size == (384, 384) and model.descriptor_dim == 128 * 4
    images = fixture_input(64, 96)
    with torch.inference_mode():
        assert torch.equal(model(images), original(images))


def test_an_option_contradicting_the_file_fails(dinov2):
    _, read, _, _ = dinov2
    with pytest.raises(ConfigError, match="backbone=resnet50 contradicts the checkpoint"):
        resolve("paper", {"model.method": "boq", "model.options": {"backbone": "resnet50"}}, read.settings)
    with pytest.raises(ConfigError, match="rows=16 contradicts"):
        resolve("paper", {"model.method": "boq", "model.options": {"rows": 16}}, read.settings)
    agreeing = resolve("paper", {"model.method": "boq", "model.options": {"channels": 384}}, read.settings)
    assert agreeing.model.options["backbone"] == "dinov2_vitb14"


def test_a_wrong_file_fails_in_one_line(resnet_state, tmp_path):
    assert_a_foreign_file_fails_in_one_line("boq", tmp_path, "backbone.vit.cls_token")

    incomplete = {k: v for k, v in resnet_state.items() if k != "aggregator.proj_c.weight"}
    with pytest.raises(CheckpointError, match="boq checkpoint but lacks 'aggregator.proj_c.weight'"):
        load_as_user("boq", write_official(incomplete, tmp_path / "resnet50_16384.pth"))
