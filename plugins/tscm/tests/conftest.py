"""The harness's own fixtures, as any third-party plugin would use them."""

import pytest

from vpr_bench.api import load_all
from vpr_bench.testing import TINY_CLI, isolated_cwd, synthetic_root  # noqa: F401

# Tiny teacher/student: timm's test_resnet (cut after stage 3, 192 channels) and test_vit (64-d tokens).
TINY = {
    "model.backbone": "test_resnet",
    "model.backbone_stage": 3,
    "model.descriptor_dim": 256,
    "model.options": {"vit": "test_vit", "vit_patch_size": 16, "width": 32, "clusters": 4, "patch_dim": 16},
}


@pytest.fixture(scope="session")
def tiny_tscm() -> dict:
    """Config values for a tiny teacher and student (256-d descriptors)."""
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}


@pytest.fixture(scope="session")
def tiny_cli() -> list[str]:
    """The same, as CLI options, with 32×32 images, no workers, CPU, quiet."""
    options = [f"--model-option={k}={v}" for k, v in TINY["model.options"].items()]
    return [*TINY_CLI, "--backbone-stage", "3", "--descriptor-dim", "256", *options]


load_all()  # the registries are filled at the entry points: for the tests, here
