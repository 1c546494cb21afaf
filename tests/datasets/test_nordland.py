"""Nordland's three protocols: seqNet's 13-field structs (1×N frame positions), Patch-NetVLAD's
summer-vs-winter ±7 frames, VPR-Bench's lists; and the records that name them."""

import json

import numpy as np
import pytest
import scipy.io

from tests.conftest import write_image
from vpr_bench.config import DataConfig
from vpr_bench.datasets import build_dataset
from vpr_bench.datasets.netvlad_mat import read_db_struct
from vpr_bench.datasets.split import FRAMES, METRES
from vpr_bench.errors import DatasetError
from vpr_bench.testing import TINY_CLI, run_cli

# seqNet's field order as loadmat shows its test file: the usual ten, plus dataset, gpsDb, gpsQ
SEQNET_FIELDS = (
    "whichSet",
    "dbImageFns",
    "qImageFns",
    "numImages",
    "numQueries",
    "posDistThr",
    "posDistSqThr",
    "nonTrivPosDistSqThr",
    "dataset",
    "utmDb",
    "utmQ",
    "gpsDb",
    "gpsQ",
)


def frame(position: int) -> str:
    """A clean-list position's frame name (the list skips tunnels: names run ahead of positions)."""
    return f"images-{position + 4059:05d}.png"


def cell(strings):
    out = np.empty((len(strings), 1), dtype=object)
    out[:, 0] = strings
    return out


def write_seqnet_struct(path, which_set, db_coords, q_coords, pos_dist=1, non_triv_sq=1, dataset="nordland"):
    """A struct of seqNet's exact layout: int64 1×N positions (Nordland) or float 2×N UTM (MSLS)."""
    db_coords, q_coords = np.asarray(db_coords), np.asarray(q_coords)
    positions = db_coords.ndim == 1
    names = (
        (lambda c: [frame(int(p)) for p in c])
        if positions
        else (lambda c: [f"{i}.jpg" for i in range(len(c))])
    )
    scalar = lambda v: np.array([[v]], dtype=np.int64)  # noqa: E731
    values = {
        "whichSet": which_set,
        "dbImageFns": cell(names(db_coords)),
        "qImageFns": cell(names(q_coords)),
        "numImages": scalar(len(db_coords)),
        "numQueries": scalar(len(q_coords)),
        "posDistThr": scalar(pos_dist),
        "posDistSqThr": scalar(pos_dist**2),
        "nonTrivPosDistSqThr": scalar(non_triv_sq),
        "dataset": dataset,
        "utmDb": db_coords.reshape(1, -1).astype(np.int64) if positions else db_coords.T.astype(float),
        "utmQ": q_coords.reshape(1, -1).astype(np.int64) if positions else q_coords.T.astype(float),
        "gpsDb": np.vstack([np.full(len(db_coords), 66.0), np.linspace(13.0, 14.0, len(db_coords))]),
        "gpsQ": np.vstack([np.full(len(q_coords), 66.0), np.linspace(13.0, 14.0, len(q_coords))]),
    }
    struct = np.empty((1, 1), dtype=[(name, object) for name in SEQNET_FIELDS])
    for name in SEQNET_FIELDS:
        struct[0, 0][name] = values[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"dbStruct": struct})
    return path


TEST_POSITIONS = np.arange(15100, 18100)  # seqNet's test: 3,000 frames of the clean list


@pytest.fixture
def seqnet_test(tmp_path):
    return write_seqnet_struct(
        tmp_path / "structs" / "nordland_test_d-1_d2-1.db", "test", TEST_POSITIONS, TEST_POSITIONS
    )


def test_the_struct_has_seqnets_exact_layout(seqnet_test):
    raw = scipy.io.loadmat(seqnet_test)["dbStruct"][0, 0]
    assert raw.dtype.names == SEQNET_FIELDS
    assert raw["whichSet"].shape == (1,) and raw["whichSet"][0] == "test" and raw["dataset"][0] == "nordland"
    assert raw["dbImageFns"].shape == (3000, 1) and raw["dbImageFns"][0, 0].shape == (1,)
    assert raw["dbImageFns"][0, 0][0] == "images-19159.png"
    assert raw["utmDb"].shape == (1, 3000) and raw["utmDb"].dtype == np.int64 and raw["utmDb"][0, 0] == 15100
    assert raw["gpsQ"].shape == (2, 3000) and raw["gpsQ"].dtype == np.float64
    assert raw["numImages"].shape == (1, 1) and raw["posDistThr"].dtype == np.int64


def test_thirteen_fields_read_by_name_as_frame_positions(seqnet_test):
    s = read_db_struct(seqnet_test)
    assert s["positions"] == FRAMES and (s["numDb"], s["numQ"], s["posDistThr"]) == (3000, 3000, 1.0)
    assert s["utmDb"].shape == (3000, 1) and s["utmQ"][:2, 0].tolist() == [15100.0, 15101.0]
    assert s["dbImage"][0] == "images-19159.png" and s["gpsDb"].shape == (3000, 2)


def test_seqnet_test_split_positives_are_the_neighbouring_frames(seqnet_test, tmp_path):
    options = DataConfig(data_root=str(tmp_path / "nordland"), struct_dir=str(seqnet_test.parent))
    split = build_dataset("nordland-seqnet", options).split("test")
    assert (split.num_database, split.num_queries) == (3000, 3000)
    assert split.positions == FRAMES and split.database_utm.shape == (3000, 1)
    assert split.database_paths[0] == tmp_path / "nordland" / "spring" / "images-19159.png"
    assert split.query_paths[0] == tmp_path / "nordland" / "fall" / "images-19159.png"
    gt = split.ground_truth()
    assert gt.kind == "distance" and gt.radius == 1.0
    assert gt.counts[0] == gt.counts[-1] == 2 and (gt.counts[1:-1] == 3).all()
    assert gt.positives(0).tolist() == [0, 1] and gt.positives(1500).tolist() == [1499, 1500, 1501]
    assert gt.positives(2999).tolist() == [2998, 2999]
    assert split.protocol_name == "nordland-seqnet-test"
    widened = build_dataset("nordland-seqnet", options).split("test", DataConfig(pos_radius=2))
    assert widened.protocol_name == "nordland-seqnet-test@2frames" and widened.ground_truth().counts[5] == 5


def test_training_radii_are_frames_and_non_trivial_is_squared(tmp_path):
    positions = np.arange(0, 200)
    path = tmp_path / "nordland_train_d-40_d2-10.db"
    write_seqnet_struct(path, "train", positions, positions, pos_dist=40, non_triv_sq=100)
    options = DataConfig(data_root=str(tmp_path), struct_dir=str(tmp_path))
    split = build_dataset("nordland-seqnet", options).split("train")
    assert split.database_paths[0].parent.name == "summer" and split.query_paths[0].parent.name == "winter"
    assert (split.pos_radius, split.train_pos_radius, split.train_neg_radius) == (40.0, 10.0, 40.0)
    positives, excluded = split.training_positives(), split.training_exclusion()
    assert positives.positives(100).tolist() == list(range(90, 111))  # |i − j| ≤ 10, boundary in
    assert excluded.positives(100).tolist() == list(range(60, 141))


def test_msls_struct_of_seqnet_still_reads_as_metres(tmp_path):
    db = np.array([[500000.0, 6000000.0], [500008.0, 6000000.0], [500100.0, 6000000.0]])
    q = np.array([[500001.0, 6000000.0], [500099.0, 6000000.0]])
    path = write_seqnet_struct(tmp_path / "msls_test_d-1_d2-1.db", "test", db, q, pos_dist=10, dataset="msls")
    s = read_db_struct(path)
    assert s["positions"] == METRES and s["utmDb"].shape == (3, 2) and s["posDistThr"] == 10.0
    np.testing.assert_allclose(s["utmQ"], q)
    # a 2×N struct where the reader expects seqNet's Nordland positions is refused
    path.rename(tmp_path / "nordland_test_d-1_d2-1.db")
    options = DataConfig(data_root=str(tmp_path), struct_dir=str(tmp_path))
    with pytest.raises(DatasetError, match=r"2×N metres, not the 1×N frame positions"):
        build_dataset("nordland-seqnet", options).split("test")


def test_missing_and_ambiguous_struct_files_are_named(tmp_path):
    options = DataConfig(data_root=str(tmp_path))
    with pytest.raises(DatasetError, match=r"nordland_val_d-\*_d2-\*.db not found in .*--struct-dir"):
        build_dataset("nordland-seqnet", options).split("val")
    for name in ("nordland_val_d-1_d2-1.db", "nordland_val_d-5_d2-1.db"):
        write_seqnet_struct(tmp_path / name, "val", np.arange(3), np.arange(3))
    with pytest.raises(DatasetError, match=r"several nordland_val_d-\*_d2-\*.db files"):
        build_dataset("nordland-seqnet", options).split("val")


def make_seasons(root, frames, seasons=("summer", "winter")):
    for season in seasons:
        for i, name in enumerate(frames):
            write_image(root / season / name, colour=(i * 13 % 255, 40, 90), size=(8, 8))
    return root


def test_patch_netvlad_protocol_is_seven_frames_either_side(tmp_path):
    frames = [frame(p) for p in range(20)]
    root = make_seasons(tmp_path / "nordland", frames)
    (root / "winter" / "notes.txt").write_text("not a frame")
    split = build_dataset("nordland-pnv", DataConfig(data_root=str(root))).split("test")
    split.validate()
    assert (split.num_database, split.num_queries) == (20, 20) and split.positions == FRAMES
    assert (
        split.database_paths[3] == root / "summer" / frames[3]
        and split.query_paths[3] == root / "winter" / frames[3]
    )
    gt = split.ground_truth()
    assert gt.positives(0).tolist() == list(range(8)) and gt.positives(10).tolist() == list(range(3, 18))
    assert split.protocol_name == "nordland-pnv" and split.source == str(root / "summer")


def test_patch_netvlad_clean_list_file_is_used(tmp_path):
    root = make_seasons(tmp_path / "nordland", [frame(p) for p in range(12)])
    chosen = [frame(p) for p in (0, 2, 4, 6, 8, 10)]
    (root / "nordland_clean.txt").write_text("".join(f"summer/{name}\n" for name in chosen) + "\n")
    split = build_dataset("nordland-pnv", DataConfig(data_root=str(root))).split("test")
    assert [p.name for p in split.query_paths] == chosen and split.source.endswith("nordland_clean.txt")
    assert split.ground_truth().positives(0).tolist() == list(range(6))  # positions in the list, not names


def test_patch_netvlad_without_frames_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetError, match=r"summer does not exist: Nordland is kept as <root>/<season>"):
        build_dataset("nordland-pnv", DataConfig(data_root=str(tmp_path))).split("test")


def write_vprbench_nordland(root, queries=3, refs=30):
    """VPR-Bench's layout: query i correct at references 10i−1, 10i, 10i+1."""
    for i in range(queries):
        write_image(root / "query" / f"{i:07d}.jpg", size=(8, 8))
    for i in range(refs):
        write_image(root / "ref" / f"{i:07d}.jpg", size=(8, 8))
    rows = np.empty((queries, 2), dtype=object)
    for i in range(queries):
        rows[i, 0], rows[i, 1] = i, [r for r in (10 * i - 1, 10 * i, 10 * i + 1) if r >= 0]
    np.save(root / "ground_truth_new.npy", rows, allow_pickle=True)
    return root


def test_vprbench_nordland_reads_through_the_list_readers(tmp_path):
    root = write_vprbench_nordland(tmp_path / "Nordland")
    by_layout = build_dataset(f"vprbench:{root}").split("test")
    named = build_dataset("nordland-vprbench", DataConfig(data_root=str(root))).split("test")
    for split in (by_layout, named):
        assert (split.num_database, split.num_queries) == (30, 3) and split.ground_truth_kind == "list"
        assert [split.ground_truth().positives(i).tolist() for i in range(3)] == [
            [0, 1],
            [9, 10, 11],
            [19, 20, 21],
        ]
    assert (
        by_layout.protocol_name == "vprbench-Nordland-test-lists"
        and named.protocol_name == "nordland-vprbench"
    )
    # GSV-Cities / SALAD's copy of the same lists
    np.save(root / "Nordland_dbImages.npy", np.array([f"ref/{i:07d}.jpg" for i in range(30)]))
    np.save(root / "Nordland_qImages.npy", np.array([f"query/{i:07d}.jpg" for i in range(3)]))
    gt = np.empty(3, dtype=object)
    for i in range(3):
        gt[i] = np.array([r for r in (10 * i - 1, 10 * i, 10 * i + 1) if r >= 0])
    np.save(root / "Nordland_gt.npy", gt, allow_pickle=True)
    lists = build_dataset(f"npylist:{root}:Nordland").split("test")
    assert lists.ground_truth().positives(2).tolist() == [19, 20, 21]
    (root / "ground_truth_new.npy").unlink()
    assert build_dataset("nordland-vprbench", DataConfig(data_root=str(root))).split("test").num_queries == 3


def test_cli_record_names_the_nordland_protocol_and_frame_positions(tmp_path, capsys):
    root = make_seasons(tmp_path / "nordland", [frame(p) for p in range(24)])
    args = ["eval", "--method", "gem", "--dataset", "nordland-pnv", "--data-root", str(root), "--untrained"]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "results"), *TINY_CLI], capsys)
    assert code == 0, err
    (metrics,) = (tmp_path / "results").glob("nordland-pnv/gem/*/metrics.json")
    protocol = json.loads(metrics.read_text())["protocol"]
    assert protocol["name"] == "nordland-pnv" and protocol["positions"] == "frame index"
    assert protocol["pos_radius_m"] == 7.0 and protocol["num_queries"] == 24
    assert protocol["queries_left_out_by_protocol"] == 0


def test_readers_without_a_named_protocol_are_named_by_dataset_split_radius(tmp_path):
    from tests.datasets.test_netvlad_mat import make_pitts

    root = make_pitts(tmp_path / "pitts30k")
    dataset = build_dataset("pitts30k", DataConfig(data_root=str(root)))
    split = dataset.split("test")
    assert split.protocol_name == "pitts30k-test-25m" and split.positions == METRES
    assert dataset.split("test", DataConfig(pos_radius=10)).protocol_name == "pitts30k-test-10m"
