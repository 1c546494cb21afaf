import numpy as np
import pytest
import scipy.io

from tests.conftest import write_image
from vpr_bench.config import DataConfig
from vpr_bench.datasets import build_dataset
from vpr_bench.datasets.netvlad_mat import read_db_struct
from vpr_bench.errors import DatasetError
from vpr_bench.testing import write_db_struct

DB = ["000/000000_pitch1_yaw1.jpg", "000/000000_pitch1_yaw2.jpg", "001/000100_pitch2_yaw1.jpg"]
Q = ["000/000007_pitch1_yaw1.jpg", "001/000107_pitch1_yaw3.jpg"]
DB_UTM = np.array([[585000.0, 4477000.0], [585000.0, 4477000.0], [585300.0, 4477000.0]])
Q_UTM = np.array([[585005.0, 4477003.0], [585290.0, 4477020.0]])


def make_pitts(root, layout="netvlad", split="test", field_order=None):
    root.mkdir(parents=True, exist_ok=True)
    kwargs = {"field_order": field_order} if field_order else {}
    write_db_struct(root / f"pitts30k_{split}.mat", split, DB, DB_UTM, Q, Q_UTM, **kwargs)
    db_dir, q_dir = (
        (root, root / "queries_real") if layout == "netvlad" else (root / "database", root / "query")
    )
    for name in DB:
        write_image(db_dir / name)
    for name in Q:
        write_image(q_dir / name)
    return root


def test_db_struct_round_trip_with_exact_layout(tmp_path):
    write_db_struct(tmp_path / "s.mat", "test", DB, DB_UTM, Q, Q_UTM)
    raw = scipy.io.loadmat(tmp_path / "s.mat")["dbStruct"].item()  # how NetVLAD ports read it: by position
    assert len(raw) == 10 and raw[0].item() == "test" and [f[0].item() for f in raw[1]] == DB
    assert raw[2].shape == (2, 3) and int(raw[5].item()) == 3 and float(raw[9].item()) == 100.0
    s = read_db_struct(tmp_path / "s.mat")
    assert s["dbImage"] == DB and s["qImage"] == Q
    np.testing.assert_allclose(s["utmDb"], DB_UTM)
    assert (s["numDb"], s["numQ"], s["posDistThr"], s["nonTrivPosDistSqThr"]) == (3, 2, 25.0, 100.0)


@pytest.mark.parametrize("layout", ["netvlad", "tscm"])
def test_both_image_layouts_are_found(tmp_path, layout):
    root = make_pitts(tmp_path / "pitts30k", layout)
    split = build_dataset("pitts30k", DataConfig(data_root=str(root))).split("test")
    split.validate()
    assert split.info["layout"] == layout
    assert split.database_paths[2] == (root if layout == "netvlad" else root / "database") / DB[2]
    assert split.pos_radius == 25.0 and split.train_pos_radius == 10.0
    assert split.ground_truth().positives(0).tolist() == [0, 1]
    assert split.ground_truth().positives(1).tolist() == [2]


def test_struct_file_is_looked_up_in_struct_dir(tmp_path):
    root = make_pitts(tmp_path / "pitts30k")
    (tmp_path / "structs").mkdir()
    (root / "pitts30k_test.mat").rename(tmp_path / "structs" / "pitts30k_test.mat")
    options = DataConfig(data_root=str(root), struct_dir=str(tmp_path / "structs"))
    assert build_dataset("pitts30k", options).split("test").num_queries == 2


def test_missing_struct_file_names_places_searched(tmp_path):
    with pytest.raises(DatasetError, match=r"pitts30k_test.mat not found in .*--struct-dir"):
        build_dataset("pitts30k", DataConfig(data_root=str(tmp_path))).split("test")


def test_truncated_mat_is_a_clear_error(tmp_path):
    root = make_pitts(tmp_path / "pitts30k")
    data = (root / "pitts30k_test.mat").read_bytes()
    (root / "pitts30k_test.mat").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"pitts30k_test.mat"):
        build_dataset("pitts30k", DataConfig(data_root=str(root))).split("test")


def test_wrong_fields_are_named(tmp_path):
    root = tmp_path / "pitts30k"
    root.mkdir()
    scipy.io.savemat(
        root / "pitts30k_test.mat", {"dbStruct": {"whichSet": "test", "utmDb": np.zeros((2, 2))}}
    )
    with pytest.raises(DatasetError, match=r"no field dbImageFns or dbImage"):
        build_dataset("pitts30k", DataConfig(data_root=str(root))).split("test")
    scipy.io.savemat(root / "pitts30k_test.mat", {"somethingElse": 1})
    with pytest.raises(DatasetError, match=r"no 'dbStruct' variable"):
        build_dataset("pitts30k", DataConfig(data_root=str(root))).split("test")


def test_missing_images_are_counted(tmp_path):
    root = make_pitts(tmp_path / "pitts30k")
    (root / DB[1]).unlink()
    (root / DB[2]).unlink()
    split = build_dataset("pitts30k", DataConfig(data_root=str(root))).split("test")
    with pytest.raises(DatasetError, match=r"2 of 5 images are missing \(first: .*000000_pitch1_yaw2.jpg"):
        split.validate()


def test_no_images_at_all_says_which_paths_were_tried(tmp_path):
    root = tmp_path / "pitts30k"
    root.mkdir()
    write_db_struct(root / "pitts30k_test.mat", "test", DB, DB_UTM, Q, Q_UTM)
    with pytest.raises(DatasetError, match=r"images of pitts30k_test.mat not found .*--layout"):
        build_dataset("pitts30k", DataConfig(data_root=str(root))).split("test")


def test_corrupt_image_is_named(tmp_path):
    root = make_pitts(tmp_path / "pitts30k")
    (root / DB[0]).write_bytes(b"not a jpeg")
    split = build_dataset("pitts30k", DataConfig(data_root=str(root))).split("test")
    with pytest.raises(DatasetError, match=r"cannot read image .*000000_pitch1_yaw1.jpg"):
        split.validate()


def test_unknown_split(tmp_path):
    with pytest.raises(DatasetError, match=r"tokyo247 has no 'train' split \(available: test\)"):
        build_dataset("tokyo247", DataConfig(data_root=str(tmp_path))).split("train")


SEQNET_ORDER = (
    "whichSet",
    "dbImageFns",
    "qImageFns",
    "numImages",
    "numQueries",
    "posDistThr",
    "posDistSqThr",
    "dataset",
    "nonTrivPosDistSqThr",
    "utmDb",
    "utmQ",
)


def test_fields_are_read_by_name_in_any_order(tmp_path):
    write_db_struct(tmp_path / "netvlad.mat", "test", DB, DB_UTM, Q, Q_UTM)
    write_db_struct(
        tmp_path / "seqnet.mat",
        "test",
        DB,
        DB_UTM,
        Q,
        Q_UTM,
        field_order=SEQNET_ORDER,
        extra={"dataset": "nordland"},
    )
    a, b = read_db_struct(tmp_path / "netvlad.mat"), read_db_struct(tmp_path / "seqnet.mat")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_equal(a[key], b[key])


def test_python_port_spellings(tmp_path):
    order = (
        "whichSet",
        "dbImage",
        "utmDb",
        "qImage",
        "utmQ",
        "numDb",
        "numQ",
        "posDistThr",
        "posDistSqThr",
        "nonTrivPosDistSqThr",
    )
    values = {
        "dbImage": np.array(DB, dtype=object).reshape(-1, 1),
        "qImage": np.array(Q, dtype=object).reshape(-1, 1),
        "numDb": 3,
        "numQ": 2,
    }
    write_db_struct(tmp_path / "p.mat", "test", DB, DB_UTM, Q, Q_UTM, field_order=order, extra=values)
    assert read_db_struct(tmp_path / "p.mat")["qImage"] == Q


def unnamed(values):
    cell = np.empty((1, len(values)), dtype=object)
    for i, v in enumerate(values):
        cell[0, i] = v
    return cell


def cell_of(strings):
    out = np.empty((len(strings), 1), dtype=object)
    out[:, 0] = strings
    return out


def test_unnamed_struct_falls_back_to_position(tmp_path):
    values = ["test", cell_of(DB), DB_UTM.T, cell_of(Q), Q_UTM.T, 3, 2, 25.0, 625.0, 100.0]
    scipy.io.savemat(tmp_path / "u.mat", {"dbStruct": unnamed(values)})
    s = read_db_struct(tmp_path / "u.mat")
    assert s["dbImage"] == DB and s["numQ"] == 2 and s["nonTrivPosDistSqThr"] == 100.0
    scipy.io.savemat(tmp_path / "bad.mat", {"dbStruct": unnamed(values[:7])})
    with pytest.raises(DatasetError, match=r"unnamed dbStruct with 7 fields; expected 10 \(NetVLAD\) or 12"):
        read_db_struct(tmp_path / "bad.mat")


TOKYOTM_ORDER = (
    "whichSet",
    "dbImageFns",
    "utmDb",
    "dbTimeStamp",
    "qImageFns",
    "utmQ",
    "qTimeStamp",
    "numImages",
    "numQueries",
    "posDistThr",
    "posDistSqThr",
    "nonTrivPosDistSqThr",
)


@pytest.mark.parametrize("named", [True, False])
def test_tokyotm_twelve_fields(tmp_path, named):
    stamps = {"dbTimeStamp": np.array([[201301, 201301, 201405]]), "qTimeStamp": np.array([[201405, 201301]])}
    if named:
        write_db_struct(
            tmp_path / "tm.mat", "val", DB, DB_UTM, Q, Q_UTM, field_order=TOKYOTM_ORDER, extra=stamps
        )
    else:
        values = [
            "val",
            cell_of(DB),
            DB_UTM.T,
            stamps["dbTimeStamp"],
            cell_of(Q),
            Q_UTM.T,
            stamps["qTimeStamp"],
            3,
            2,
            25.0,
            625.0,
            100.0,
        ]
        scipy.io.savemat(tmp_path / "tm.mat", {"dbStruct": unnamed(values)})
    s = read_db_struct(tmp_path / "tm.mat")
    assert (s["numDb"], s["numQ"], s["posDistThr"], s["nonTrivPosDistSqThr"]) == (3, 2, 25.0, 100.0)
    assert s["qImage"] == Q and s["dbTimeStamp"].tolist() == [201301, 201301, 201405]
    np.testing.assert_allclose(s["utmQ"], Q_UTM)


def test_tokyo247_counts_each_panorama_once(tmp_path):
    """24 cut-outs = 2 panoramas; the query's only positive panorama is the second one."""
    root = tmp_path / "tokyo247"
    root.mkdir()
    db = [f"{i // 12:05d}/{i:06d}.jpg" for i in range(24)]
    db_utm = np.array([[0.0, 0.0]] * 12 + [[500.0, 0.0]] * 12)
    write_db_struct(root / "tokyo247.mat", "test", db, db_utm, ["q0.jpg"], np.array([[501.0, 0.0]]))
    for name in db:
        write_image(root / name)
    write_image(root / "247query_v3/q0.jpg")
    split = build_dataset("tokyo247", DataConfig(data_root=str(root))).split("test")
    assert split.database_groups.tolist() == [0] * 12 + [1] * 12
    from vpr_bench.evaluation.matching import collapse_groups
    from vpr_bench.evaluation.metrics import recall_at_n

    # the raw ranking: all 12 cut-outs of the wrong panorama first, then the right one
    ranked = np.array([list(range(12)) + list(range(12, 24))])
    gt = split.ground_truth()
    assert recall_at_n(ranked[:, :2], gt, (1, 2))["R@2"] == 0.0  # without collapsing: a miss at 2
    dist, idx = collapse_groups(np.zeros(ranked.shape, np.float32), ranked, split.database_groups, 2)
    assert idx.tolist() == [[0, 12]]
    assert recall_at_n(idx, gt, (1, 2)) == {"R@1": 0.0, "R@2": 100.0}
