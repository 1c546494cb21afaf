"""GSV-Cities as downloaded: names as the official loader makes them, unique place ids across cities, places
with fewer than K images counted and left out, bad trees named in one line."""

import numpy as np
import pytest

from tests.conftest import tiny_config
from vpr_bench.datasets.gsv_cities import CITY_STRIDE, OFFICIAL_CITIES, GSVCities, pandas_text
from vpr_bench.errors import ConfigError, DatasetError
from vpr_bench.testing import make_gsv_cities
from vpr_bench.training.places import load_training_set


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "gsv-cities"
    return root, make_gsv_cities(root, index_column=("Boston",))


def test_places_are_read_with_the_official_names_and_unique_ids(tree):
    root, written = tree
    places = GSVCities("gsv-cities", root).load_places("London,Boston,OSL", min_images=4)
    assert [city for city, _ in places.groups] == ["London", "Boston", "OSL"]
    # Boston's place 2 has 3 images: left out and counted, as min_img_per_place does
    assert places.info["counts"]["Boston"]["places_with_fewer_images"] == 1
    assert places.info["counts"]["Boston"]["images_left_out"] == 3
    assert places.num_places == 11 and len(places.paths) == 19 + 15 + 19
    expected = {
        (number * CITY_STRIDE + place, path)
        for number, city in enumerate(("London", "Boston", "OSL"))
        for place, path in written[city]
        if not (city == "Boston" and place == 2)
    }
    assert {(int(places.labels[i]), path) for i, path in enumerate(places.paths)} == expected
    for rows in places.members:  # one label per place, every image of it
        assert len(set(places.labels[rows])) == 1 and len(rows) >= 4
    assert sorted(np.concatenate(places.members).tolist()) == list(range(len(places.paths)))
    assert places.num_queries == 0 and places.database_paths == places.paths


def test_numbers_are_written_as_pandas_prints_them():
    assert pandas_text(["42.35010", "42.1"]) == ["42.3501", "42.1"]
    assert pandas_text(["7", "45"]) == ["7", "45"]
    assert pandas_text(["7", "45.5"]) == ["7.0", "45.5"]  # one float makes the column float


def test_cities_default_to_the_official_list_and_all_reads_every_csv(tree):
    root, _ = tree
    dataset = GSVCities("gsv-cities", root)
    assert dataset.cities(None) == list(OFFICIAL_CITIES) and len(OFFICIAL_CITIES) == 23
    assert dataset.cities("all") == ["Boston", "London", "OSL"]
    with pytest.raises(DatasetError, match=r"Bangkok\.csv does not exist: no GSV-Cities city 'Bangkok'"):
        dataset.load_places(None, 4)  # the official list starts with Bangkok, not in this tree


def test_a_missing_image_a_missing_folder_and_a_bad_header_are_named(tree):
    root, written = tree
    dataset = GSVCities("gsv-cities", root)
    _, lost = written["OSL"][3]
    lost.unlink()
    with pytest.raises(DatasetError, match=rf"OSL\.csv line 5: its image .*{lost.name} is missing \(1 of"):
        dataset.load_places("OSL", 4)
    for path in (root / "Images" / "OSL").iterdir():
        path.unlink()
    (root / "Images" / "OSL").rmdir()
    with pytest.raises(DatasetError, match=r"Images/OSL does not exist"):
        dataset.load_places("OSL", 4)
    (root / "Dataframes" / "London.csv").write_text("place_id,year,city_id\n1,2,London\n")
    with pytest.raises(DatasetError, match=r"London\.csv has no column month, northdeg, lat, lon, panoid"):
        dataset.load_places("London", 4)
    with pytest.raises(DatasetError, match=r"no GSV-Cities city 'Paris' \(cities there: Boston, London, OSL"):
        dataset.load_places("Paris", 4)


def test_gsv_cities_is_trained_on_not_evaluated(tree, tmp_path):
    root, _ = tree
    cfg = tiny_config(**{"data.dataset": "gsv-cities", "data.data_root": str(root)})
    from vpr_bench.datasets import load_split

    with pytest.raises(
        DatasetError, match=r"training set of places.*--train-dataset gsv-cities --recipe gsv"
    ):
        load_split(cfg.data, "val")
    as_training = {"recipe.train_dataset": "gsv-cities", "recipe.train_data_root": str(root)}
    with pytest.raises(ConfigError, match="set of places, trained on with place batches: add --recipe gsv"):
        load_training_set(tiny_config(**as_training))
    places = load_training_set(
        tiny_config(**as_training, **{"recipe.name": "gsv", "recipe.train_cities": "London,OSL"})
    )
    assert places.num_places == 8 and places.info["cities"] == ["London", "OSL"]
    with pytest.raises(DatasetError, match=r"no Dataframes/ and Images/ folders.*--train-data-root"):
        load_training_set(tiny_config(**{**as_training, "recipe.name": "gsv", "recipe.train_data_root": "x"}))


def test_k_above_every_place_leaves_too_few_places(tree):
    root, _ = tree
    cfg = tiny_config(
        **{"recipe.name": "gsv", "recipe.train_dataset": "gsv-cities", "recipe.train_data_root": str(root),
           "recipe.train_cities": "London", "recipe.images_per_place": 6}
    )  # fmt: skip
    with pytest.raises(DatasetError, match=r"1 place\(s\) with ≥ 6 images; place batches need at least two"):
        load_training_set(cfg)
