"""The decoded-image cache in use: a second evaluation, and a second training run (its cache refreshes,
mined tuples, validations and test), open no image file, and end at the same figures."""

import json

import pytest

from vpr_bench.datasets.split import Split
from vpr_bench.runner import evaluate_run, train_run
from vpr_bench.testing import TINY_TRAINING, tiny_config


@pytest.fixture
def opened(opened_images, monkeypatch) -> list[str]:
    """Image files PIL opens in the passes (a split's check of a few images at loading is left out)."""
    monkeypatch.setattr(Split, "validate", lambda self, *a, **k: None)
    return opened_images


def record(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_a_second_evaluation_opens_no_image_file(synthetic_root, tmp_path, opened):
    cfg = tiny_config(**{"data.dataset": f"folder:{synthetic_root}", "out": str(tmp_path / "results")})
    first = record(evaluate_run(cfg))
    assert len(opened) >= 60  # the cold pass decoded the test split's images
    opened.clear()
    second = record(evaluate_run(cfg))
    assert opened == [] and second["metrics"] == first["metrics"]


def test_a_second_training_run_opens_no_image_file(synthetic_root, tmp_path, opened):
    cfg = tiny_config(
        **{"data.dataset": f"folder:{synthetic_root}", "out": str(tmp_path / "results"), **TINY_TRAINING}
    )
    first = record(train_run(cfg))
    opened.clear()
    second = record(train_run(cfg))
    assert opened == []
    assert second["metrics"] == first["metrics"]
    losses = [[h["loss"] for h in run["training"]["history"]] for run in (first, second)]
    assert losses[0] == losses[1]
