import json

import numpy as np
import pytest

from tests.conftest import tiny_config, write_image
from vpr_bench.datasets import DatasetOptions, build_dataset
from vpr_bench.errors import DatasetError
from vpr_bench.runner import evaluate_run


def test_corridor_ships_with_the_package_and_reads_as_lists(data_dir):
    assert not (data_dir / "corridor").exists()  # no ../shared, no datasets/: the packaged copy
    split = build_dataset("corridor").split("test")
    split.validate()
    assert (split.num_database, split.num_queries) == (111, 111)
    gt = split.ground_truth()
    assert gt.kind == "list" and gt.radius is None
    assert gt.positives(0).tolist() == [0, 1, 2] and gt.positives(1).tolist() == [0, 1, 2, 3]
    assert 1 <= gt.counts.min() and gt.counts.max() <= 5


def test_corridor_evaluation_records_list_ground_truth(tmp_path):
    run_dir = evaluate_run(tiny_config(**{"data.dataset": "corridor", "out": str(tmp_path)}))
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["dataset"] == "corridor" and record["protocol"]["ground_truth"] == "list"
    assert record["protocol"]["pos_radius_m"] is None and record["protocol"]["num_queries"] == 111


def make_vprbench(root, gt_rows, n_query=3, n_ref=4):
    for i in range(n_query):
        write_image(root / "query" / f"{i:07d}.jpg")
    for i in range(n_ref):
        write_image(root / "ref" / f"{i:07d}.jpg")
    rows = np.empty((len(gt_rows), 2), dtype=object)
    for r, (q, refs) in enumerate(gt_rows):
        rows[r, 0], rows[r, 1] = q, list(refs)
    np.save(root / "ground_truth_new.npy", rows, allow_pickle=True)
    return root


def test_vprbench_reader_orders_rows_by_query_index(tmp_path):
    root = make_vprbench(tmp_path / "gardens", [(2, [3]), (0, [0, 1]), (1, [])])
    split = build_dataset(f"vprbench:{root}").split("test")
    assert split.dataset == "vprbench-gardens"
    assert [split.ground_truth().positives(i).tolist() for i in range(3)] == [[0, 1], [], [3]]


@pytest.mark.parametrize(
    "rows, message",
    [
        ([(0, [9])], r"index out of range \[0, 4\)"),
        ([(7, [0])], "query index 7 but 3 query images"),
    ],
)
def test_vprbench_bad_ground_truth(tmp_path, rows, message):
    root = make_vprbench(tmp_path / "d", rows)
    with pytest.raises(DatasetError, match=message):
        build_dataset(f"vprbench:{root}").split("test")


def test_vprbench_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"ref does not exist: a VPR-Bench dataset has query/, ref/"):
        build_dataset(f"vprbench:{tmp_path}").split("test")


def test_npylist_reader(tmp_path):
    db = [f"images/db/{i}.jpg" for i in range(4)]
    q = [f"images/q/{i}.jpg" for i in range(2)]
    for p in db + q:
        write_image(tmp_path / p)
    np.save(tmp_path / "msls_val_dbImages.npy", np.array(db))
    np.save(tmp_path / "msls_val_qImages.npy", np.array(q))
    gt = np.empty(2, dtype=object)
    gt[0], gt[1] = np.array([1, 3]), np.array([2])
    np.save(tmp_path / "msls_val_gt.npy", gt, allow_pickle=True)
    split = build_dataset(f"npylist:{tmp_path}:msls_val").split("test")
    split.validate()
    assert split.database_paths[3] == tmp_path / "images/db/3.jpg"
    assert [split.ground_truth().positives(i).tolist() for i in range(2)] == [[1, 3], [2]]
    np.save(tmp_path / "msls_val_gt.npy", gt[:1], allow_pickle=True)
    with pytest.raises(DatasetError, match=r"msls_val_gt.npy: 1 ground-truth rows for 2 queries"):
        build_dataset(f"npylist:{tmp_path}:msls_val").split("test")
    with pytest.raises(DatasetError, match=r"other_dbImages.npy not found"):
        build_dataset(f"npylist:{tmp_path}:other").split("test")
    with pytest.raises(DatasetError, match=r"expected npylist:<folder>:<name>"):
        build_dataset("npylist:justone", DatasetOptions())
