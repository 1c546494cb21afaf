import numpy as np
import pytest

from tests.conftest import make_folder_dataset, write_image
from vpr_bench.datasets import build_dataset
from vpr_bench.errors import DatasetError


def test_folder_dataset_reads_utm_from_names(tmp_path):
    db = np.array([[585000.0, 4477000.0], [585100.0, 4477000.0], [585200.0, 4477000.0]])
    q = np.array([[585004.0, 4477003.0], [585195.0, 4477010.0]])
    make_folder_dataset(tmp_path, "test", db, q)
    (tmp_path / "images/test/database/notes.txt").write_text("not an image: ignored")
    dataset = build_dataset(f"folder:{tmp_path}")
    assert dataset.splits == ("test",)
    split = dataset.split("test")
    np.testing.assert_allclose(split.database_utm, db)
    np.testing.assert_allclose(split.query_utm, q)
    assert [g.tolist() for g in map(split.ground_truth().positives, range(2))] == [[0], [2]]


def test_png_and_jpeg_extensions(tmp_path):
    for i, ext in enumerate((".jpg", ".JPEG", ".png")):
        write_image(tmp_path / f"images/val/database/@{585000 + i}@4477000@x{ext}")
    write_image(tmp_path / "images/val/queries/@585000@4477000@q.jpg")
    assert build_dataset(f"folder:{tmp_path}").split("val").num_database == 3


def test_unparsable_file_name_is_named(tmp_path):
    write_image(tmp_path / "images/test/database/IMG_0001.jpg")
    write_image(tmp_path / "images/test/queries/@1@2@.jpg")
    with pytest.raises(
        DatasetError, match=r"cannot parse UTM from file name .*IMG_0001.jpg: expected '@<east>"
    ):
        build_dataset(f"folder:{tmp_path}").split("test")


def test_empty_split_is_named(tmp_path):
    write_image(tmp_path / "images/test/database/@1@2@.jpg")
    (tmp_path / "images/test/queries").mkdir(parents=True)
    with pytest.raises(
        DatasetError, match=r"queries holds no .jpg/.jpeg/.png images: the test split is empty"
    ):
        build_dataset(f"folder:{tmp_path}").split("test")


def test_missing_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"images does not exist: a folder dataset needs"):
        build_dataset(f"folder:{tmp_path}")


def test_registered_folder_name_uses_data_dir(data_dir):
    make_folder_dataset(data_dir / "st_lucia", "test", np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]]))
    assert build_dataset("st_lucia").split("test").num_queries == 1


def test_pitts30k_in_folder_layout_uses_the_folder_reader(data_dir):
    make_folder_dataset(data_dir / "pitts30k", "test", np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]]))
    assert build_dataset("pitts30k").split("test").info["layout"] == "folder"


def test_a_folder_of_ones_own_images_is_ranked_without_labels(tmp_path, capsys):
    import json

    from vpr_bench.testing import TINY_CLI, run_cli

    for i in range(3):
        write_image(tmp_path / f"mine/images/test/database/IMG_{i:04d}.jpg", colour=(80 * i, 40, 200))
    write_image(tmp_path / "mine/images/test/queries/query.jpg", colour=(80, 40, 200))
    split = build_dataset(f"folder:{tmp_path / 'mine'}").split("test")
    assert split.database_utm is None and "no image name carries UTM" in split.no_labels
    args = ["eval", "--method", "gem", "--dataset", f"folder:{tmp_path / 'mine'}", "--untrained"]
    args += ["--out", str(tmp_path / "results"), "--recall-at", "1,2", *TINY_CLI]
    code, _, err = run_cli(args, capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "evaluate it with --no-labels" in err
    code, _, err = run_cli([*args, "--no-labels"], capsys)
    assert code == 0, err
    (metrics,) = (tmp_path / "results").glob("*/gem/*/metrics.json")
    assert json.loads(metrics.read_text())["metrics"] == {}
    (line,) = (metrics.parent / "predictions.tsv").read_text().splitlines()
    query, *ranked = line.split("\t")
    assert query.endswith("query.jpg") and len(ranked) == 2 and all("IMG_" in p for p in ranked)
    assert not (metrics.parent / "msls_submission.csv").exists()  # MSLS's test cities only
