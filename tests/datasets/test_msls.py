"""MSLS as downloaded (train_val/<city>/{query,database}/ + CSVs) under the official protocol:
panoramas out, subtask ``all``, 25 m within a city, queries without a positive left out and counted."""

import json

import pytest

from tests.conftest import make_folder_dataset, write_image
from vpr_bench.config import DataConfig
from vpr_bench.datasets import build_dataset
from vpr_bench.errors import DatasetError
from vpr_bench.testing import TINY_CLI, run_cli

HEADERS = {
    "raw.csv": ",key,lon,lat,ca,captured_at,pano",
    "postprocessed.csv": ",key,easting,northing,unique_cluster,control_panel,night,view_direction",
    "seq_info.csv": ",key,sequence_key,frame_number",
    "subtask_index.csv": ",key,all,s2w,w2s,o2n,n2o,d2n,n2d",
}
E, N = 347000.0, 6176000.0  # one UTM point; both cities are put there, so only the city keeps them apart


def write_part(folder, rows):
    """rows: (key, easting, northing, pano, in subtask all); the CSVs row-aligned, like the download's."""
    lines = {name: [header] for name, header in HEADERS.items()}
    for i, (key, east, north, pano, in_all) in enumerate(rows):
        write_image(folder / "images" / f"{key}.jpg", colour=(i * 40 % 255, 60, 120), size=(8, 8))
        lines["raw.csv"].append(f"{i},{key},12.56,55.67,90.0,1500000000000,{pano}")
        lines["postprocessed.csv"].append(f"{i},{key},{east},{north},1,False,False,90.0")
        lines["seq_info.csv"].append(f"{i},{key},seq{i // 3},{i % 3}")
        lines["subtask_index.csv"].append(f"{i},{key},{in_all},False,False,False,False,False,False")
    for name, text in lines.items():
        (folder / name).write_text("\n".join(text) + "\n")


def make_msls(root):
    """cph: 4 database rows (one panorama), 5 query rows of which q_ok keeps a positive; sf: 2 and 2,
    at the same coordinates as cph."""
    write_part(
        root / "train_val/cph/database",
        [
            ("c_db0", E, N, False, True),
            ("c_db1", E + 25.0, N, False, True),  # exactly 25 m from c_q0: a positive
            ("c_pano", E, N, True, True),
            ("c_db3", E + 500.0, N, False, True),
        ],
    )
    write_part(
        root / "train_val/cph/query",
        [
            ("c_q0", E, N, False, True),
            ("c_qpano", E, N, True, True),  # a panorama
            ("c_qsub", E, N, False, False),  # not in subtask all
            ("c_qfar", E + 5000.0, N, False, True),  # no database image within 25 m: left out
            ("c_q4", E + 510.0, N, False, True),
        ],
    )
    write_part(
        root / "train_val/sf/database", [("s_db0", E, N, False, True), ("s_db1", E + 25.01, N, False, True)]
    )
    write_part(
        root / "train_val/sf/query", [("s_q0", E, N, False, True), ("s_q1", E + 2000.0, N, False, True)]
    )
    return root


@pytest.fixture
def msls_root(tmp_path):
    return make_msls(tmp_path / "msls")


def test_val_counts_order_and_per_city_ground_truth(msls_root):
    split = build_dataset(f"msls:{msls_root}").split("val")
    split.validate()
    assert [p.stem for p in split.database_paths] == ["c_db0", "c_db1", "c_db3", "s_db0", "s_db1"]
    assert [p.stem for p in split.query_paths] == ["c_q0", "c_q4", "s_q0"]
    assert split.database_paths[0] == msls_root / "train_val/cph/database/images/c_db0.jpg"
    gt = split.ground_truth()
    # c_q0 sits on the same coordinates as s_db0 but in another city; 25 m is in, 25.01 m out
    assert [gt.positives(i).tolist() for i in range(3)] == [[0, 1], [2], [3]]
    assert split.queries_left_out == 2 and gt.queries_without_positives.size == 0
    assert split.protocol_name == "msls-val" and split.info["cities"] == ["cph", "sf"]
    cph = split.info["counts"]["cph/query"]
    assert cph == {"rows": 5, "panoramas": 1, "not_in_subtask_all": 1, "kept": 3}
    assert split.info["counts"]["cph/database"]["panoramas"] == 1


def test_default_root_and_cities_option(msls_root, data_dir):
    data_dir.mkdir()
    msls_root.rename(data_dir / "msls")
    split = build_dataset("msls", DataConfig(cities="sf")).split("val")
    assert [p.stem for p in split.query_paths] == ["s_q0"] and split.num_database == 2
    assert split.protocol_name == "msls-val-sf" and split.queries_left_out == 1
    both = build_dataset("msls", DataConfig(cities="sf, cph")).split("val")
    assert both.database_paths[0].stem == "s_db0" and both.protocol_name == "msls-val-sf+cph"


def test_train_split_radii(msls_root):
    (msls_root / "train_val/cph").rename(msls_root / "train_val/london")
    split = build_dataset(f"msls:{msls_root}", DataConfig(cities="london")).split("train")
    assert (split.pos_radius, split.train_pos_radius, split.train_neg_radius) == (25.0, 10.0, 25.0)
    assert split.protocol_name == "msls-train-london" and split.training_positives().positives(
        0
    ).tolist() == [0]
    with pytest.raises(DatasetError, match=r"train_val/trondheim does not exist: no MSLS city 'trondheim'"):
        build_dataset(f"msls:{msls_root}").split("train")  # the 22 training cities, trondheim first


@pytest.mark.parametrize("cities", [None, "cph,miami"])
def test_test_split_has_no_gps(msls_root, cities):
    split = "test" if cities is None else "val"
    with pytest.raises(DatasetError, match=r"MSLS test .* has no GPS: it is scored on the challenge server"):
        build_dataset(f"msls:{msls_root}", DataConfig(cities=cities)).split(split)


def test_missing_csv_and_column_are_named(msls_root):
    (msls_root / "train_val/sf/query/subtask_index.csv").unlink()
    with pytest.raises(DatasetError, match=r"sf/query/subtask_index.csv not found"):
        build_dataset(f"msls:{msls_root}").split("val")
    path = msls_root / "train_val/cph/database/postprocessed.csv"
    path.write_text(path.read_text().replace("northing", "north"))
    with pytest.raises(
        DatasetError, match=r"postprocessed.csv has no column northing \(header: ,key,easting,north"
    ):
        build_dataset(f"msls:{msls_root}").split("val")


def test_rows_must_be_aligned(msls_root):
    path = msls_root / "train_val/cph/query/postprocessed.csv"
    lines = path.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DatasetError, match=r"postprocessed.csv row 0 is key c_qpano but .*raw.csv row 0 is c_q0"
    ):
        build_dataset(f"msls:{msls_root}").split("val")


def test_subtask_index_without_key_column_and_bad_flags(msls_root):
    path = msls_root / "train_val/cph/query/subtask_index.csv"
    path.write_text(
        "\n".join(
            ",".join(line.split(",")[:1] + line.split(",")[2:]) for line in path.read_text().splitlines()
        )
    )
    assert build_dataset(f"msls:{msls_root}").split("val").num_queries == 3
    raw = msls_root / "train_val/sf/database/raw.csv"
    raw.write_text(raw.read_text().replace("False\n", "maybe\n", 1))
    with pytest.raises(DatasetError, match=r"sf/database/raw.csv: column pano holds 'maybe'"):
        build_dataset(f"msls:{msls_root}").split("val")


def test_not_msls_and_converted_msls(tmp_path):
    with pytest.raises(DatasetError, match=r"train_val does not exist: MSLS is read as downloaded"):
        build_dataset(f"msls:{tmp_path}")
    make_folder_dataset(tmp_path, "val", [[0.0, 0.0], [100.0, 0.0]], [[1.0, 0.0]])
    split = build_dataset(f"msls:{tmp_path}").split("val")
    assert split.num_database == 2 and split.protocol_name == "msls-dvg-val"
    with pytest.raises(DatasetError, match=r"--cities needs MSLS as downloaded"):
        build_dataset(f"msls:{tmp_path}", DataConfig(cities="cph"))


def test_cli_record_names_the_msls_protocol_and_the_queries_left_out(msls_root, tmp_path, capsys):
    args = ["eval", "--method", "gem", "--dataset", f"msls:{msls_root}", "--split", "val", "--untrained"]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "results"), *TINY_CLI], capsys)
    assert code == 0, err
    (metrics,) = (tmp_path / "results").glob("msls/gem/*/metrics.json")
    protocol = json.loads(metrics.read_text())["protocol"]
    assert protocol["name"] == "msls-val" and protocol["positions"] == "metres (UTM)"
    assert (protocol["num_database"], protocol["num_queries"], protocol["queries_left_out_by_protocol"]) == (
        5,
        3,
        2,
    )
    assert protocol["queries_without_positives"] == 0 and protocol["pos_radius_m"] == 25.0
    code, _, err = run_cli([*args[:-3], "--out", str(tmp_path / "results"), *TINY_CLI], capsys)
    assert code != 0 and "has no GPS" in err and len(err.strip().splitlines()) == 1
