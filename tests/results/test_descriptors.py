"""Descriptors kept in a run folder (``--save-descriptors``) and evaluated again without the model
(``eval --descriptors RUN``): the same metrics, no forward pass, the split checked image by image."""

import json

import numpy as np
import pytest
import torch

from vpr_bench.datasets import build_dataset
from vpr_bench.testing import TINY_CLI, run_cli

BUDGET = [
    *("--epochs", "1", "--batch-size", "4", "--negatives", "2", "--negative-samples", "20"),
    *("--queries-per-epoch", "8", "--lr", "1e-3"),
]


def record_of(out) -> tuple:
    (path,) = out.glob("*/*/*/metrics.json")
    return path.parent, json.loads(path.read_text())


@pytest.fixture
def forwards(monkeypatch):
    """Counts every module call and every descriptor extraction from here on."""
    from vpr_bench.evaluation import engine

    counted = {"modules": 0, "extractions": 0}
    call, extract = torch.nn.Module.__call__, engine.extract

    def counting_call(self, *args, **kwargs):
        counted["modules"] += 1
        return call(self, *args, **kwargs)

    def counting_extract(*args, **kwargs):
        counted["extractions"] += 1
        return extract(*args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", counting_call)
    monkeypatch.setattr(engine, "extract", counting_extract)
    return counted


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_kept_descriptors_give_the_same_metrics_without_a_forward_pass(
    synthetic_root, tmp_path, capsys, forwards, dtype
):
    dataset = ["--dataset", f"folder:{synthetic_root}"]
    first = tmp_path / "first"
    args = ["eval", "--method", "gem", *dataset, "--out", str(first), *TINY_CLI, "--save-descriptors"]
    code, _, err = run_cli([*args, "--saved-descriptor-dtype", dtype], capsys)
    assert code == 0, err
    assert forwards["modules"] > 0 and forwards["extractions"] == 2  # database and queries
    run_dir, record = record_of(first)
    kept = run_dir / "descriptors"
    manifest = json.loads((kept / "manifest.json").read_text())
    assert manifest["dtype"] == dtype and manifest["header"]["method"] == "gem"
    assert (
        manifest["preprocessing"]["image_size"] == [32, 32] and manifest["model"]["backbone"] == "test_resnet"
    )
    split = build_dataset(f"folder:{synthetic_root}").split("test")
    assert (kept / "database.txt").read_text().splitlines() == [str(p) for p in split.database_paths]
    assert (kept / "queries.txt").read_text().splitlines() == [str(p) for p in split.query_paths]
    database = np.load(kept / "database.npy")
    assert database.dtype == np.dtype(dtype) and database.shape == (split.num_database, manifest["dim"])
    assert np.allclose(np.linalg.norm(database.astype(np.float32), axis=1), 1.0, atol=1e-2)
    assert record["descriptors"] == {"kept_in": "descriptors", "dtype": dtype}
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no scratch folder left

    forwards.update(modules=0, extractions=0)
    second = tmp_path / "second"
    reuse = [
        "eval",
        *dataset,
        "--descriptors",
        str(run_dir),
        "--out",
        str(second),
        "--device",
        "cpu",
        "--quiet",
    ]
    code, _, err = run_cli(reuse, capsys)  # no --method: the kept descriptors name theirs
    assert code == 0, err
    assert forwards == {"modules": 0, "extractions": 0}  # not one forward pass
    _, again = record_of(second)
    assert again["method"] == "gem" and again["weights"] == record["weights"]
    assert again["metrics"] == pytest.approx(record["metrics"], abs=1e-9)
    assert again["descriptors"]["from"] == str(kept) and again["descriptors"]["model_ran"] is False
    assert again["cost"]["params"] == record["cost"]["params"]  # the keeping run's model figures
    assert again["protocol"]["index"] == ("flat-fp16" if dtype == "float16" else "flat")
    assert again["protocol"]["image_size"] == [32, 32]


def test_descriptors_of_another_split_fail_in_one_line(synthetic_root, tmp_path, capsys):
    dataset = ["--dataset", f"folder:{synthetic_root}"]
    args = [
        "eval",
        "--method",
        "gem",
        *dataset,
        "--out",
        str(tmp_path / "a"),
        *TINY_CLI,
        "--save-descriptors",
    ]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    run_dir, _ = record_of(tmp_path / "a")
    reuse = ["eval", *dataset, "--descriptors", str(run_dir), "--out", str(tmp_path / "b"), "--quiet"]
    code, _, err = run_cli([*reuse, "--split", "val"], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert f"--descriptors {run_dir}: they describe" in err or "image 0 is" in err
    assert "test" in err and "val" in err
    code, _, err = run_cli([*reuse, "--method", "netvlad"], capsys)
    assert code != 0 and "kept by gem, not netvlad" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["eval", *dataset, "--descriptors", str(tmp_path), "--quiet"], capsys)
    assert code != 0 and "no kept descriptors there" in err
    code, _, err = run_cli([*reuse, "--untrained"], capsys)
    assert code != 0 and "exclude each other" in err


def test_a_training_run_keeps_its_tests_descriptors(synthetic_root, tmp_path, capsys):
    out = tmp_path / "results"
    args = ["run", "--method", "gem", "--dataset", f"folder:{synthetic_root}", "--out", str(out), *TINY_CLI]
    code, _, err = run_cli([*args, *BUDGET, "--save-descriptors"], capsys)
    assert code == 0, err
    run_dir, record = record_of(out)
    manifest = json.loads((run_dir / "descriptors" / "manifest.json").read_text())
    assert manifest["split"] == "test" and manifest["dtype"] == "float16"
    assert (
        manifest["header"]["weights"].startswith("trained from")
        and record["descriptors"]["dtype"] == "float16"
    )
    assert np.load(run_dir / "descriptors" / "queries.npy").shape[0] == record["protocol"]["num_queries"]


@pytest.mark.parametrize("setting", [{"eval.no_labels": True}, {"eval.descriptors": "results/x"}])
def test_training_refuses_the_eval_only_settings(tmp_path, setting):
    from vpr_bench.errors import VPRBenchError
    from vpr_bench.runner import train_run
    from vpr_bench.testing import tiny_config

    cfg = tiny_config(**{"out": str(tmp_path), **setting})  # e.g. an eval's config.json replayed by run
    with pytest.raises(VPRBenchError, match=r"apply to vpr-bench eval, not to training"):
        train_run(cfg)
    assert not (tmp_path / "synthetic").exists()
