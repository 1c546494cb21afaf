"""MSLS as downloaded (train_val/<city>/{query,database}/ + CSVs) under the official protocol:
panoramas out, subtask ``all``, 25 m within a city, queries without a positive left out and counted; and
its test cities (no GPS): ranked with --no-labels and written as the challenge's submission file."""

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


def flag_subtasks(root, city, flags):
    """Set the subtask columns of a city's query subtask_index.csv: ``flags`` {key: [subtask, …]}."""
    path = root / f"train_val/{city}/query/subtask_index.csv"
    header, *rows = path.read_text().splitlines()
    names = header.split(",")
    lines = [header]
    for row in rows:
        cells = row.split(",")
        for subtask in flags.get(cells[1], ()):
            cells[names.index(subtask)] = "True"
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")


def test_subtasks_become_query_conditions(msls_root):
    from vpr_bench.datasets.msls import SUBTASKS

    flag_subtasks(msls_root, "cph", {"c_q0": ["s2w"], "c_qfar": ["s2w"], "c_q4": ["n2d", "o2n"]})
    flag_subtasks(msls_root, "sf", {"s_q0": ["s2w"]})
    split = build_dataset(f"msls:{msls_root}").split("val")
    assert [p.stem for p in split.query_paths] == ["c_q0", "c_q4", "s_q0"]
    assert tuple(split.conditions) == SUBTASKS
    assert split.conditions["s2w"].tolist() == [True, False, True]  # c_qfar left out, with its flag
    assert split.conditions["n2d"].tolist() == split.conditions["o2n"].tolist() == [False, True, False]
    assert not split.conditions["d2n"].any()


def test_cli_breaks_every_metric_down_by_subtask(msls_root, tmp_path, capsys):
    import numpy as np

    flag_subtasks(msls_root, "cph", {"c_q0": ["s2w"], "c_q4": ["n2d"]})
    flag_subtasks(msls_root, "sf", {"s_q0": ["s2w"]})
    results = tmp_path / "results"
    args = ["eval", "--method", "gem", "--dataset", f"msls:{msls_root}", "--split", "val", "--untrained"]
    code, _, err = run_cli([*args, "--metrics", "all", "--out", str(results), *TINY_CLI], capsys)
    assert code == 0, err
    (metrics,) = results.glob("msls/gem/*/metrics.json")
    record = json.loads(metrics.read_text())
    assert record["protocol"]["conditions"] == {"s2w": 2, "w2s": 0, "o2n": 0, "n2o": 0, "d2n": 0, "n2d": 1}
    assert set(record["metrics_by_condition"]) == {"s2w", "n2d"}  # the conditions with queries
    assert set(record["metrics_by_condition"]["s2w"]) == set(record["metrics"])
    predictions = np.load(metrics.parent / "predictions.npz")["predictions"]
    positives = [{0, 1}, {2}, {3}]  # c_q0, c_q4, s_q0 (test_val_counts_order_and_per_city_ground_truth)
    top1 = [predictions[q, 0] in positives[q] for q in range(3)]
    assert record["metrics_by_condition"]["s2w"]["R@1"] == 100.0 * (top1[0] + top1[2]) / 2
    assert record["metrics_by_condition"]["n2d"]["R@1"] == 100.0 * top1[1]
    code, out, err = run_cli(["compare", "--results", str(results), "--breakdown", "--format", "csv"], capsys)
    assert code == 0, err
    header, row = out.splitlines()[:2]
    assert {"s2w:R@1", "n2d:R@1"} <= set(header.split(","))
    cells = dict(zip(header.split(","), row.split(","), strict=True))
    assert float(cells["n2d:R@1"]) == record["metrics_by_condition"]["n2d"]["R@1"]
    code, out, _ = run_cli(["compare", "--results", str(results), "--breakdown", "--metric", "mAP@5"], capsys)
    assert code == 0 and "s2w mAP@5" in out and "n2d mAP@5" in out


def write_test_part(folder, keys, in_all=None):
    """A test city's folder as downloaded: images, seq_info.csv and subtask_index.csv only (no GPS)."""
    lines = {name: [HEADERS[name]] for name in ("seq_info.csv", "subtask_index.csv")}
    for i, key in enumerate(keys):
        write_image(folder / "images" / f"{key}.jpg", colour=(i * 50 % 255, 90, 30 * i % 255), size=(8, 8))
        lines["seq_info.csv"].append(f"{i},{key},seq{i // 2},{i % 2}")
        flag = True if in_all is None else in_all[i]
        lines["subtask_index.csv"].append(f"{i},{key},{flag},False,False,False,False,False,False")
    for name, text in lines.items():
        (folder / name).write_text("\n".join(text) + "\n")


def make_msls_test(root):
    """miami: 3 database rows (one not in subtask all), 2 queries; athens: 2 and 1."""
    write_test_part(root / "test/miami/database", ["m_db0", "m_db1", "m_dbx"], [True, True, False])
    write_test_part(root / "test/miami/query", ["m_q0", "m_q1"])
    write_test_part(root / "test/athens/database", ["a_db0", "a_db1"])
    write_test_part(root / "test/athens/query", ["a_q0"])
    return root


def test_test_cities_are_read_without_ground_truth(msls_root):
    make_msls_test(msls_root)
    split = build_dataset(f"msls:{msls_root}", DataConfig(cities="miami,athens")).split("test")
    split.validate()
    assert [p.stem for p in split.database_paths] == ["m_db0", "m_db1", "a_db0", "a_db1"]  # subtask all
    assert [p.stem for p in split.query_paths] == ["m_q0", "m_q1", "a_q0"]
    assert split.query_paths[2] == msls_root / "test/athens/query/images/a_q0.jpg"
    assert split.protocol_name == "msls-test-miami+athens" and split.info["submission"] == "msls"
    assert split.info["counts"]["miami/database"] == {"rows": 3, "not_in_subtask_all": 1, "kept": 2}
    with pytest.raises(DatasetError, match=r"MSLS test \(miami, athens\) has no GPS: .*--no-labels"):
        split.ground_truth()


def test_no_labels_writes_the_challenge_submission_and_no_metrics(msls_root, tmp_path, capsys):
    import numpy as np

    make_msls_test(msls_root)
    results = tmp_path / "results"
    args = ["eval", "--method", "gem", "--dataset", f"msls:{msls_root}", "--split", "test", "--untrained"]
    args += ["--cities", "miami,athens", "--out", str(results), *TINY_CLI]
    code, _, err = run_cli(args, capsys)  # without --no-labels: one line, before the model is built
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "has no GPS: it is scored on the challenge server; evaluate it with --no-labels" in err
    code, _, err = run_cli([*args, "--no-labels"], capsys)
    assert code == 0, err
    (metrics,) = results.glob("msls/gem/*/metrics.json")
    record = json.loads(metrics.read_text())
    assert record["metrics"] == {} and record["protocol"]["name"] == "msls-test-miami+athens"
    assert (
        record["protocol"]["ground_truth"].startswith("none")
        and record["protocol"]["num_queries_evaluated"] == 3
    )
    # mapillary_sls's evaluate.py reads it so: np.loadtxt(prediction, ndmin=2, dtype=str), keys without .jpg
    submission = np.loadtxt(metrics.parent / "msls_submission.csv", ndmin=2, dtype=str)
    assert submission[:, 0].tolist() == ["m_q0", "m_q1", "a_q0"]
    assert submission.shape == (3, 1 + 4)  # every database image ranked (fewer than 20)
    database = {"m_db0", "m_db1", "a_db0", "a_db1"}
    assert all(set(row[1:]) == database for row in submission.tolist())
    predictions = np.load(metrics.parent / "predictions.npz")["predictions"]
    stems = ["m_db0", "m_db1", "a_db0", "a_db1"]
    assert submission[:, 1:].tolist() == [[stems[i] for i in row] for row in predictions.tolist()]
    ranked = (metrics.parent / "predictions.tsv").read_text().splitlines()
    assert ranked[0].split("\t")[0] == str(msls_root / "test/miami/query/images/m_q0.jpg")
    code, out, err = run_cli(["compare", "--results", str(results)], capsys)
    assert code == 0, err  # a record without metrics still lists
