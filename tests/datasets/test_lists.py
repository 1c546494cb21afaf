import json
import os
import pickle

import numpy as np
import pytest

from tests.conftest import tiny_config, write_image
from vpr_bench.config import DataConfig
from vpr_bench.datasets import build_dataset
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
        build_dataset("npylist:justone", DataConfig())


# ---- object arrays are read without running their pickle ----------------------------------------------


class RunsOnLoad:
    """Pickles as a call to ``action(*args)``: what a malicious ground-truth file would hold."""

    def __init__(self, action, *args):
        self.action, self.args = action, args

    def __reduce__(self):
        return self.action, self.args


def save_npy(path, array, protocol=None):
    """``np.save`` (pickle protocol 3), or the same .npy with the pickle written at ``protocol``."""
    if protocol is None:
        np.save(path, array, allow_pickle=True)
        return
    header = {"descr": "|O", "fortran_order": False, "shape": array.shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        pickle.dump(array, f, protocol=protocol)


def rows_with(payload):
    rows = np.empty((3, 2), dtype=object)
    rows[:, 0] = [0, 1, 2]
    rows[0, 1], rows[1, 1], rows[2, 1] = [0], payload, [3]
    return rows


@pytest.mark.parametrize("protocol", [None, 2, 5])  # GLOBAL (≤ 3) and STACK_GLOBAL (≥ 4) opcodes
@pytest.mark.parametrize("kind", ["shell", "builtin"])
def test_malicious_ground_truth_is_refused_and_never_runs(tmp_path, kind, protocol):
    marker = tmp_path / "pwned"
    payload = {
        "shell": RunsOnLoad(os.system, f"touch {marker}"),
        "builtin": RunsOnLoad(exec, f"open({str(marker)!r}, 'w').close()"),
    }[kind]
    root = make_vprbench(tmp_path / "d", [(0, [0])])
    gt_path = root / "ground_truth_new.npy"
    save_npy(gt_path, rows_with(payload), protocol)
    np.load(gt_path, allow_pickle=True)  # the payload is live: plain np.load runs it ...
    assert marker.exists()
    marker.unlink()
    refused = r"(posix|nt)\.system" if kind == "shell" else r"(__builtin__|builtins)\.exec"
    with pytest.raises(DatasetError, match=rf"ground_truth_new\.npy: refused to unpickle {refused}; "):
        build_dataset(f"vprbench:{root}").split("test")
    assert not marker.exists()  # ... the reader refuses it before anything is called
    np.save(tmp_path / "x_dbImages.npy", np.array(["db/0.jpg"]))
    np.save(tmp_path / "x_qImages.npy", np.array(["q/0.jpg", "q/1.jpg", "q/2.jpg"]))
    save_npy(tmp_path / "x_gt.npy", rows_with(payload)[:, 1], protocol)  # a GSV-Cities list
    with pytest.raises(DatasetError, match=rf"x_gt\.npy: refused to unpickle {refused}; "):
        build_dataset(f"npylist:{tmp_path}:x").split("test")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [None, 2, 5])
def test_real_shaped_vprbench_and_gsv_object_arrays_read(tmp_path, protocol):
    root = make_vprbench(tmp_path / "vb", [], n_query=4, n_ref=6)
    rows = np.empty((4, 2), dtype=object)  # numpy indices and arrays as well as Python ints and lists
    rows[0], rows[1] = [np.int64(3), np.array([5, 4], dtype=np.int32)], [0, [0, 1]]
    rows[2], rows[3] = [np.int32(1), np.array([], dtype=np.int64)], [2, np.array([[2], [3]], dtype=">i8")]
    save_npy(root / "ground_truth_new.npy", rows, protocol)
    gt = build_dataset(f"vprbench:{root}").split("test").ground_truth()
    assert [gt.positives(i).tolist() for i in range(4)] == [[0, 1], [], [2, 3], [4, 5]]

    db, q = [f"db/{i}.jpg" for i in range(5)], [f"q/{i}.jpg" for i in range(3)]
    np.save(tmp_path / "gsv_dbImages.npy", np.array(db))
    np.save(tmp_path / "gsv_qImages.npy", np.array(q, dtype=object), allow_pickle=True)  # paths as objects
    lists = np.empty(3, dtype=object)
    lists[0], lists[1], lists[2] = (
        np.array([4, 0]),
        np.array([], dtype=np.int32),
        np.arange(5, dtype=np.uint16),
    )
    save_npy(tmp_path / "gsv_gt.npy", lists, protocol)
    split = build_dataset(f"npylist:{tmp_path}:gsv").split("test")
    assert split.query_paths[2] == tmp_path / "q/2.jpg"
    gt = split.ground_truth()
    assert [gt.positives(i).tolist() for i in range(3)] == [[0, 4], [], [0, 1, 2, 3, 4]]


def test_packaged_corridor_reads_as_numpy_would(data_dir):
    from vpr_bench.datasets.lists import PACKAGED, _load_npy

    path = PACKAGED / "corridor" / "ground_truth_new.npy"  # a Python 2 pickle (protocol 2, byte strings)
    ours, trusted = _load_npy(path, "ground truth"), np.load(path, allow_pickle=True, encoding="latin1")
    assert ours.shape == trusted.shape == (111, 2) and ours.dtype == object
    assert [(int(q), list(refs)) for q, refs in ours] == [(int(q), list(refs)) for q, refs in trusted]


class ArrayState:
    """Pickles as numpy's own array rebuild with the given ``__setstate__`` state."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return _reconstruct, (np.ndarray, (0,), b"b"), self.state


@pytest.mark.parametrize(
    "state, message",
    [
        # numpy's __setstate__ reads past a list shorter than the shape (a segfault): checked first
        ((1, (3, 2), np.dtype(object), False, [0, [1], 1]), r"\(3, 2\) object array pickled with 3 items"),
        ((1, (2,), np.dtype("i8"), False, b"\x00" * 8), r"8 data bytes for a \(2,\) int64 array"),
        ((1, (1,), np.dtype("U3"), False, b"\x00" * 12), r"dtype 'U3' in an index list"),
        ((1, (-1,), np.dtype(object), False, []), r"array shape \(-1,\)"),
    ],
)
def test_inconsistent_pickled_arrays_fail_clearly(tmp_path, state, message):
    from vpr_bench.datasets.lists import _load_npy

    path = tmp_path / "bad_gt.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (3,)})
        pickle.dump(ArrayState(state), f, protocol=3)
    with pytest.raises(DatasetError, match=rf"bad_gt\.npy is not a readable \.npy file \({message}\)"):
        _load_npy(path, "ground truth")


def test_truncated_object_array_fails_clearly(tmp_path):
    from vpr_bench.datasets.lists import PACKAGED

    data = (PACKAGED / "corridor" / "ground_truth_new.npy").read_bytes()
    (tmp_path / "query").mkdir(), (tmp_path / "ref").mkdir()
    (tmp_path / "ground_truth_new.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"ground_truth_new\.npy is not a readable \.npy file"):
        build_dataset(f"vprbench:{tmp_path}").split("test")
