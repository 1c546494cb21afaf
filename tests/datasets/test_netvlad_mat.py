import numpy as np
import pytest
import scipy.io

from tests.conftest import write_image
from vpr_bench.datasets import DatasetOptions, build_dataset
from vpr_bench.datasets.netvlad_mat import read_db_struct, write_db_struct
from vpr_bench.errors import DatasetError

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
    split = build_dataset("pitts30k", DatasetOptions(data_root=str(root))).split("test")
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
    options = DatasetOptions(data_root=str(root), struct_dir=str(tmp_path / "structs"))
    assert build_dataset("pitts30k", options).split("test").num_queries == 2


def test_missing_struct_file_names_places_searched(tmp_path):
    with pytest.raises(DatasetError, match=r"pitts30k_test.mat not found in .*--struct-dir"):
        build_dataset("pitts30k", DatasetOptions(data_root=str(tmp_path))).split("test")


def test_truncated_mat_is_a_clear_error(tmp_path):
    root = make_pitts(tmp_path / "pitts30k")
    data = (root / "pitts30k_test.mat").read_bytes()
    (root / "pitts30k_test.mat").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"pitts30k_test.mat"):
        build_dataset("pitts30k", DatasetOptions(data_root=str(root))).split("test")


def test_wrong_fields_are_named(tmp_path):
    root = tmp_path / "pitts30k"
    root.mkdir()
    scipy.io.savemat(
        root / "pitts30k_test.mat", {"dbStruct": {"whichSet": "test", "utmDb": np.zeros((2, 2))}}
    )
    with pytest.raises(DatasetError, match=r"no field dbImageFns or dbImage"):
        build_dataset("pitts30k", DatasetOptions(data_root=str(root))).split("test")
    scipy.io.savemat(root / "pitts30k_test.mat", {"somethingElse": 1})
    with pytest.raises(DatasetError, match=r"no 'dbStruct' variable"):
        build_dataset("pitts30k", DatasetOptions(data_root=str(root))).split("test")


def test_missing_images_are_counted(tmp_path):
    root = make_pitts(tmp_path / "pitts30k")
    (root / DB[1]).unlink()
    (root / DB[2]).unlink()
    split = build_dataset("pitts30k", DatasetOptions(data_root=str(root))).split("test")
    with pytest.raises(DatasetError, match=r"2 of 5 images are missing \(first: .*000000_pitch1_yaw2.jpg"):
        split.validate()


def test_no_images_at_all_says_which_paths_were_tried(tmp_path):
    root = tmp_path / "pitts30k"
    root.mkdir()
    write_db_struct(root / "pitts30k_test.mat", "test", DB, DB_UTM, Q, Q_UTM)
    with pytest.raises(DatasetError, match=r"images of pitts30k_test.mat not found .*--layout"):
        build_dataset("pitts30k", DatasetOptions(data_root=str(root))).split("test")


def test_corrupt_image_is_named(tmp_path):
    root = make_pitts(tmp_path / "pitts30k")
    (root / DB[0]).write_bytes(b"not a jpeg")
    split = build_dataset("pitts30k", DatasetOptions(data_root=str(root))).split("test")
    with pytest.raises(DatasetError, match=r"cannot read image .*000000_pitch1_yaw1.jpg"):
        split.validate()


def test_unknown_split(tmp_path):
    with pytest.raises(DatasetError, match=r"tokyo247 has no 'train' split \(available: test\)"):
        build_dataset("tokyo247", DatasetOptions(data_root=str(tmp_path))).split("train")
