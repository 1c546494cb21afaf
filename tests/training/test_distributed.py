"""torchrun: a 2-process gloo training on CPU ends with the record of the single-process run.

The model is timm's test_convnext (LayerNorm, no BatchNorm: per-rank batch statistics would make the two
runs differ by design; SyncBatchNorm needs a GPU), so DDP's averaged gradients are the whole batch's.
"""

import json
import subprocess
import sys

import pytest

ARGS = [
    "run", "--method", "gem", "--backbone", "test_convnext", "--no-pretrained", "--image-size", "32x32",
    "--num-workers", "0", "--device", "cpu", "--quiet", "--epochs", "2", "--batch-size", "4",
    "--negatives", "2", "--negative-samples", "20", "--queries-per-epoch", "12", "--lr", "1e-3",
]  # fmt: skip


def record(out):
    (path,) = out.glob("*/gem/*/metrics.json")
    return json.loads(path.read_text())


def validation(run: dict) -> list[dict]:
    """Each epoch's validation metrics."""
    return [{k: v for k, v in epoch.items() if k.startswith("val_")} for epoch in run["training"]["history"]]


def test_two_process_training_equals_one_process(synthetic_root, tmp_path):
    dataset = ["--dataset", f"folder:{synthetic_root}"]
    single = subprocess.run(
        [sys.executable, "-m", "vpr_bench", *ARGS, *dataset, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    double = subprocess.run(
        [*torchrun, "-m", "vpr_bench", *ARGS, *dataset, "--out", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    assert double.stdout.count("record written to") == 1  # rank 0 alone reports and writes
    one, two = record(tmp_path / "one"), record(tmp_path / "two")
    assert len(list((tmp_path / "two").glob("*/gem/*"))) == 1  # one run folder, not one per rank
    assert [h["loss"] for h in two["training"]["history"]] == pytest.approx(
        [h["loss"] for h in one["training"]["history"]], rel=1e-4
    )
    # each epoch's validation, its extraction split over the ranks, scores as one process's does
    assert validation(two) == [pytest.approx(epoch, abs=1e-6) for epoch in validation(one)]
    assert two["metrics"] == pytest.approx(one["metrics"], abs=1e-6)
