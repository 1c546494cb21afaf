"""GSV-Cities (Ali-bey et al., Neurocomputing 2022) as downloaded: a training set of places.

``<root>/Dataframes/<City>.csv`` with a header row naming ``place_id, year, month, northdeg, city_id, lat,
lon, panoid`` (an unnamed index column may come first), one row per image, and the images at
``<root>/Images/<city_id>/<city_id>_<place_id:07d>_<year:04d>_<month:02d>_<northdeg:03d>_<lat>_<lon>_<panoid>.jpg``,
the numbers written as pandas reads and prints them (``get_img_name`` in amaralibey/gsv-cities
77ffffc23115e5ba966e108895343693ec49cbb2, dataloaders/train/GSVCitiesDataset.py). Place ids restart in
each city: the i-th city of the list adds i × 10⁵, as that loader does. Places with fewer than K images
are left out and counted, as its ``min_img_per_place`` filter does; a city without its CSV or image
folder, a CSV without a column, and a row whose image is absent end in one line naming them.

There are no queries and no database: GSV-Cities is trained on (``--train-dataset gsv-cities --recipe
gsv``) and models are validated and tested on a standard split (``--dataset pitts30k``, ``msls``), as the
published recipes do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vpr_bench.config import DataConfig
from vpr_bench.datasets.base import VPRDataset, dataset_root, read_columns
from vpr_bench.datasets.places import Places
from vpr_bench.errors import DatasetError
from vpr_bench.registry import register_dataset

COLUMNS = ("place_id", "year", "month", "northdeg", "city_id", "lat", "lon", "panoid")
# gsv-cities 77ffffc dataloaders/GSVCitiesDataloader.py TRAIN_CITIES (MixVPR 4043915 has the same list)
OFFICIAL_CITIES = (
    *("Bangkok", "BuenosAires", "LosAngeles", "MexicoCity", "OSL", "Rome", "Barcelona", "Chicago"),
    *("Madrid", "Miami", "Phoenix", "TRT", "Boston", "Lisbon", "Medellin", "Minneapolis", "PRG"),
    *("WashingtonDC", "Brussels", "London", "Melbourne", "Osaka", "PRS"),
)
CITY_STRIDE = 10**5  # the official loader's place-id offset per city (at most 99 999 places a city)


def pandas_text(values: list[str]) -> list[str]:
    """A numeric column's values as pandas prints them: integers where every value is one, else floats
    (``str(float)``: "51.50740" → "51.5074", "7" → "7.0" in a float column)."""
    try:
        return [str(int(v)) for v in values]
    except ValueError:
        return [str(float(v)) for v in values]


def read_city(path: Path) -> dict[str, list[str]]:
    """The columns of one city's CSV, as text."""
    return read_columns(path, COLUMNS, expected=f"GSV-Cities' Dataframes have {', '.join(COLUMNS)}")


def image_names(columns: dict[str, list[str]], path: Path) -> tuple[np.ndarray, list[str]]:
    """(place ids, file names) of a city's rows, as the official loader's ``get_img_name`` makes them."""
    try:
        place_ids = np.array([int(v) for v in columns["place_id"]], dtype=np.int64)
        text = {c: pandas_text(columns[c]) for c in ("year", "month", "northdeg", "lat", "lon")}
    except ValueError as exc:
        raise DatasetError(f"{path}: a numeric column holds text ({exc})") from None
    if len(place_ids) and (place_ids.min() < 0 or place_ids.max() >= CITY_STRIDE):
        raise DatasetError(f"{path}: place ids must lie in [0, {CITY_STRIDE}) (the loader's per-city offset)")
    names = [
        f"{city}_{str(place).zfill(7)}_{year.zfill(4)}_{month.zfill(2)}_{deg.zfill(3)}_{lat}_{lon}_{pano}.jpg"
        for city, place, year, month, deg, lat, lon, pano in zip(
            columns["city_id"], place_ids, text["year"], text["month"], text["northdeg"], text["lat"],
            text["lon"], columns["panoid"], strict=True,
        )
    ]  # fmt: skip
    return place_ids, names


class GSVCities(VPRDataset):
    """GSV-Cities' places; ``load_places`` reads them."""

    splits = ()

    def __init__(self, name: str, root: Path):
        self.name, self.root = name, Path(root)
        if not (self.root / "Dataframes").is_dir() or not (self.root / "Images").is_dir():
            raise DatasetError(
                f"{self.root}: no Dataframes/ and Images/ folders; GSV-Cities is read as downloaded, "
                "<root>/Dataframes/<City>.csv and <root>/Images/<City>/ (pass --train-data-root)"
            )

    def split(self, split: str, options: DataConfig | None = None):
        raise DatasetError(
            f"{self.name} is a training set of places, with no database or queries to evaluate: validate "
            f"and test on a standard split and train on it, e.g. --dataset pitts30k --train-dataset "
            f"{self.name} --recipe gsv"
        )

    def cities(self, spec: str | None) -> list[str]:
        """``--train-cities``: names, ``all`` (every CSV, sorted) or None (the official list)."""
        if spec is None:
            return list(OFFICIAL_CITIES)
        if spec.strip().lower() == "all":
            return sorted(p.stem for p in (self.root / "Dataframes").glob("*.csv"))
        return [c.strip() for c in spec.split(",") if c.strip()]

    def load_places(self, cities: str | None, min_images: int) -> Places:
        """The places of ``cities`` with at least ``min_images`` images (the others counted)."""
        paths: list[Path] = []
        labels: list[np.ndarray] = []
        groups: list[tuple[str, np.ndarray]] = []
        members: list[np.ndarray] = []
        counts: dict[str, dict] = {}
        for number, city in enumerate(self.cities(cities)):
            city_paths, place_ids, counted = self.read(city, number * CITY_STRIDE, min_images)
            order = np.argsort(place_ids, kind="stable")
            starts = np.flatnonzero(np.r_[True, np.diff(place_ids[order]) != 0])
            first = len(members)
            if len(order):
                members += [len(paths) + rows for rows in np.split(order, starts[1:])]
            groups.append((city, np.arange(first, len(members))))
            paths += city_paths
            labels.append(place_ids)
            counts[city] = counted
        info = {
            "cities": list(counts),
            "places": len(members),
            "images": len(paths),
            "counts": counts,
            "source_loader": "amaralibey/gsv-cities 77ffffc dataloaders/train/GSVCitiesDataset.py",
        }
        all_labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
        return Places(self.name, paths, all_labels, members, groups, len(paths), str(self.root), info)

    def read(self, city: str, offset: int, min_images: int) -> tuple[list[Path], np.ndarray, dict]:
        """One city's images of places with ≥ ``min_images`` of them: paths, place ids (+ ``offset``),
        counts."""
        csv_path = self.root / "Dataframes" / f"{city}.csv"
        if not csv_path.is_file():
            known = sorted(p.stem for p in (self.root / "Dataframes").glob("*.csv"))
            raise DatasetError(
                f"{csv_path} does not exist: no GSV-Cities city {city!r} (cities there: "
                f"{', '.join(known) or 'none'}; choose with --train-cities)"
            )
        columns = read_city(csv_path)
        place_ids, names = image_names(columns, csv_path)
        present = {folder: self.listing(folder, csv_path) for folder in dict.fromkeys(columns["city_id"])}
        absent = [
            i for i, (f, n) in enumerate(zip(columns["city_id"], names, strict=True)) if n not in present[f]
        ]
        if absent:
            image = self.root / "Images" / columns["city_id"][absent[0]] / names[absent[0]]
            raise DatasetError(
                f"{csv_path} line {absent[0] + 2}: its image {image} is missing ({len(absent)} of the "
                f"{len(names)} rows' images are); the download is incomplete"
            )
        ids, sizes = np.unique(place_ids, return_counts=True)
        kept = np.isin(place_ids, ids[sizes >= min_images])
        paths = [
            self.root / "Images" / c / n for c, n, k in zip(columns["city_id"], names, kept, strict=True) if k
        ]
        counted = {
            "rows": len(names),
            "places": len(ids),
            "places_with_fewer_images": int((sizes < min_images).sum()),
            "images_left_out": int((~kept).sum()),
        }
        return paths, place_ids[kept] + offset, counted

    def listing(self, folder: str, csv_path: Path) -> set[str]:
        directory = self.root / "Images" / folder
        if not directory.is_dir():
            raise DatasetError(f"{directory} does not exist: the images of {csv_path.name} should be there")
        with os.scandir(directory) as entries:
            return {e.name for e in entries}


@register_dataset("gsv-cities", "GSV-Cities as downloaded: places (P × K batches) for --train-dataset")
def gsv_cities(options: DataConfig) -> GSVCities:
    return GSVCities("gsv-cities", dataset_root(options, "gsv-cities"))
