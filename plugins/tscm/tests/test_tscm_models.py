"""Teacher and student: shapes from the backbones and image size, one descriptor space, paper sizes."""

import pytest
import torch

from vpr_bench.api import ConfigError, build_method
from vpr_bench.api import resolve_config as resolve


@pytest.fixture
def build(tiny_tscm):
    def make(method, **overrides):
        values = {"model.method": method, "model.pretrained": False, **tiny_tscm, **overrides}
        return build_method(resolve("demo", values).model)

    return make


@pytest.mark.parametrize("size", [(32, 32), (48, 64)])
def test_teacher_and_student_share_one_normalised_space_at_any_image_size(build, size):
    teacher, student = build("tscm-teacher"), build("tscm-student")
    images = torch.randn(3, 3, *size)
    with torch.no_grad():
        t, s = teacher.eval()(images), student.eval()(images)
    assert t.shape == s.shape == (3, 256) == (3, teacher.descriptor_dim)
    assert torch.allclose(t.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(s.norm(dim=1), torch.ones(3), atol=1e-5)


def test_teacher_tokens_are_derived_from_the_input(build):
    teacher = build("tscm-teacher").eval()
    seen = {}
    teacher.encoder.register_forward_hook(lambda m, i, o: seen.update(fused=o.shape))
    with torch.no_grad():
        teacher(torch.randn(1, 3, 64, 96))
    # 64×96 → ResNet stride 16: 4×6 = 24 tokens; ViT patch 16: 24 tokens; fused 48 tokens × 2·width
    assert seen["fused"] == (1, 48, 64)


def test_release_vit_variant_and_release_reshape_run(build):
    teacher = build("tscm-teacher", **{"model.options": {"vit_variant": "release", "release_reshape": True}})
    with torch.no_grad():
        assert teacher.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 256)


def test_bad_descriptor_dim_and_unknown_option_fail_clearly(build):
    with pytest.raises(ConfigError, match="--descriptor-dim 100"):
        build("tscm-teacher", **{"model.descriptor_dim": 100})
    with pytest.raises(
        ConfigError,
        match="'heads_typo' is not an option of tscm-student; valid: balance_parts, clusters, dropout, heads",
    ):
        build("tscm-student", **{"model.options": {"heads_typo": 3}})


def count(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def test_paper_size_parameter_counts_match_the_paper():
    """shared/FACTS.md: teacher 125.0 M, student 12.7 M — with the release's ViT (no class token or
    position embedding) and its NetVLADLoupe sample sizes."""
    paper = {"model.method": "tscm-teacher", "model.pretrained": False}
    release = {"model.options": {"release_reshape": True, "vit_variant": "release"}}
    teacher = build_method(resolve("paper", {**paper, **release}).model)
    student = build_method(resolve("paper", {**paper, "model.method": "tscm-student", **release}).model)
    assert teacher.descriptor_dim == student.descriptor_dim == 2048
    assert count(teacher) == pytest.approx(125.0, abs=0.1)
    assert count(student) == pytest.approx(12.7, abs=0.1)


def test_descriptor_dim_is_honoured_by_both_tscm_models(build):
    for method in ("tscm-teacher", "tscm-student"):
        assert build(method, **{"model.descriptor_dim": 208}).descriptor_dim == 208  # 192 + 16


def test_tscm_options_are_typed(build):
    with pytest.raises(ConfigError, match="width 30 must be a multiple of heads 4"):
        build("tscm-teacher", **{"model.options": {"width": 30, "heads": 4}})
    with pytest.raises(ConfigError, match="vit_variant must be timm or release"):
        build("tscm-student", **{"model.options": {"vit_variant": "other"}})


def test_balanced_parts_each_hold_their_share_of_the_norm(build):
    from tscm.models import combine

    parts = [torch.randn(3, 64) * 0.01, torch.randn(3, 192) * 100.0]
    raw, balanced = combine(parts, False), combine(parts, True)
    assert torch.allclose(raw.norm(dim=1), torch.ones(3)) and torch.allclose(
        balanced.norm(dim=1), torch.ones(3)
    )
    assert raw[:, :64].norm(dim=1).max() < 1e-3  # raw: the large part drowns the small one
    assert torch.allclose(balanced[:, :64].norm(dim=1), torch.full((3,), 0.5))  # √(64/256)
    with pytest.raises(ConfigError, match="parts='gem,gem'"):
        build("tscm-teacher", **{"model.options": {"parts": "gem,gem"}})
    teacher = build("tscm-teacher", **{"model.options": {"parts": "gem", "balance_parts": True}})
    assert teacher.descriptor_dim == teacher.resnet.channels
