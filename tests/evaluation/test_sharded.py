"""torchrun: a 2-process gloo `vpr-bench eval` on CPU splits the extraction and writes the record of the
single-process eval (same metrics and predictions; cost.world_size 2), once, from rank 0."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vpr_bench.evaluation.sharded import shard_rows

ARGS = [
    "eval", "--method", "gem", "--backbone", "test_convnext", "--no-pretrained", "--untrained",
    "--image-size", "32x32", "--num-workers", "0", "--device", "cpu", "--quiet", "--eval-batch-size", "4",
]  # fmt: skip
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def vpr_bench(*args, processes: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    launcher = TORCHRUN if processes == 2 else [sys.executable]
    command = [*launcher, "-m", "vpr_bench", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def run_folder(out):
    (folder,) = out.glob("*/gem/*/")  # one run folder, not one per rank
    return folder


def record(out) -> dict:
    return json.loads((run_folder(out) / "metrics.json").read_text())


def predictions(out) -> dict:
    with np.load(run_folder(out) / "predictions.npz") as saved:
        return dict(saved)


@pytest.fixture(scope="module")
def evals(synthetic_root, tmp_path_factory):
    """The same eval, alone and as 2 processes, both keeping their descriptors: their --out folders."""
    root = tmp_path_factory.mktemp("sharded-eval")
    common = [
        *ARGS,
        f"--dataset=folder:{synthetic_root}",
        "--save-descriptors",
        "--saved-descriptor-dtype=float32",
    ]
    for processes, name in ((1, "one"), (2, "two")):
        done = vpr_bench(*common, "--out", root / name, processes=processes)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("record written to") == 1, done.stdout  # rank 0 alone reports
    return root / "one", root / "two"


def test_each_rank_takes_whole_batches_in_order():
    assert shard_rows(10, 4, 2) == [range(0, 8), range(8, 10)]  # batches 0-1 | 2 (partial)
    assert shard_rows(12, 4, 2) == [range(0, 8), range(8, 12)]
    assert shard_rows(3, 4, 2) == [range(0, 3), range(3, 3)]  # one batch: rank 0's, never an empty rank 0
    rows = shard_rows(1001, 32, 8)
    assert [r for shard in rows for r in shard] == list(range(1001))
    assert all(shard.start % 32 == 0 for shard in rows)


def test_two_process_eval_equals_one_process(evals):
    one, two = evals
    single, double = record(one), record(two)
    assert single["cost"]["world_size"] == 1 and double["cost"]["world_size"] == 2
    assert double["metrics"] == pytest.approx(single["metrics"], abs=1e-6)
    assert double["recall_curve"] == pytest.approx(single["recall_curve"], abs=1e-6)
    assert double["cost"]["ms_per_image"] is not None  # rank 0's timing pass
    alone, shared = predictions(one), predictions(two)
    np.testing.assert_array_equal(shared["predictions"], alone["predictions"])
    np.testing.assert_allclose(shared["distances"], alone["distances"], atol=1e-6)
    for name in ("database", "queries"):  # --save-descriptors: rank 0 wrote the gathered rows
        kept = [np.load(run_folder(out) / "descriptors" / f"{name}.npy") for out in evals]
        np.testing.assert_allclose(kept[1], kept[0], atol=1e-6)


def test_two_process_eval_of_kept_descriptors_without_labels_runs_on_rank_0(evals, synthetic_root, tmp_path):
    """--descriptors runs no model: rank 0 alone evaluates them, the other rank exits; --no-labels ranks."""
    kept = ["--descriptors", run_folder(evals[1]), f"--dataset=folder:{synthetic_root}"]
    done = vpr_bench("eval", *kept, "--no-labels", "--quiet", "--out", tmp_path, processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("record written to") == 1
    assert record(tmp_path)["metrics"] == {} and record(tmp_path)["cost"]["world_size"] == 1
    assert (run_folder(tmp_path) / "predictions.tsv").is_file()
    np.testing.assert_array_equal(predictions(tmp_path)["predictions"], predictions(evals[0])["predictions"])


def test_a_rank_that_fails_ends_the_job(synthetic_root, tmp_path):
    """A damaged image in rank 1's share: rank 1 fails with one line, torchrun stops rank 0 (waiting for
    rank 1's rows) and the job ends with an error instead of hanging."""
    from vpr_bench.datasets import load_split
    from vpr_bench.testing import tiny_config

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    _, split = load_split(tiny_config(**{"data.dataset": f"folder:{root}"}).data, "test")
    damaged = split.database_paths[-1]  # the last batch: rank 1's
    with open(damaged, "wb") as image:
        image.write(b"not a jpeg")
    out = tmp_path / "out"
    done = vpr_bench(*ARGS, "--dataset", f"folder:{root}", "--out", out, processes=2, timeout=180)
    assert done.returncode != 0  # ended, not hung: a hang would pass the timeout and fail the test
    assert "error:" in done.stderr and Path(damaged).name in done.stderr
    assert not list(out.glob("*/gem/*/metrics.json"))
