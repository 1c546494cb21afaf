"""Mapillary Street-Level Sequences (Warburg et al., CVPR 2020) as downloaded, under its official
image-to-image protocol.

``<root>/train_val/<city>/{query,database}/images/<key>.jpg`` beside ``raw.csv`` (key, pano),
``postprocessed.csv`` (key, easting, northing) and, for queries, ``subtask_index.csv`` (all); each CSV
has a header row and an unnamed index column, and the CSVs of one folder are row-aligned.

The protocol (mapillary_sls's evaluate.py): panoramas (``pano`` True) are out of queries and database;
queries are the rows whose ``subtask_index.all`` is true; positives are database images of the same city
within 25 m (Euclidean on easting/northing, boundary included); queries without a positive are left out,
and the record counts them (``queries_left_out_by_protocol``). val = cph then sf (the papers' MSLS val:
740 queries, 18,871 database images); train = the 22 other train_val cities, with 10 m non-trivial
positives and negatives beyond 25 m. ``--cities`` chooses other cities, in the order given.

The test cities (``<root>/test/<city>/{query,database}/`` with ``seq_info.csv`` and ``subtask_index.csv``)
carry no GPS: they are scored on the challenge server. ``--split test`` reads them as mapillary_sls does
without GPS — the rows of subtask ``all``, queries and database alike, no panorama flag — as protocol
``msls-test``, a split without ground truth: ``eval --no-labels`` ranks it and writes the submission file.

``msls`` on a root in the folder layout (``images/val/...``, datasets_vg's conversion: every non-panorama
cph+sf image, about 11k queries) reads that instead, as protocol ``msls-dvg-<split>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vpr_bench.config import DataConfig
from vpr_bench.datasets.base import VPRDataset, dataset_root, read_columns
from vpr_bench.datasets.folder import FolderDataset
from vpr_bench.datasets.split import Split
from vpr_bench.errors import DatasetError
from vpr_bench.registry import register_dataset

VAL_CITIES = ("cph", "sf")
TRAIN_CITIES = (
    *("trondheim", "london", "boston", "melbourne", "amsterdam", "helsinki", "tokyo", "toronto"),
    *("saopaulo", "moscow", "zurich", "paris", "bangkok", "budapest", "austin", "berlin", "ottawa"),
    *("phoenix", "goa", "amman", "nairobi", "manila"),
)
TEST_CITIES = ("miami", "athens", "buenosaires", "stockholm", "bengaluru", "kampala")
# the query columns of subtask_index.csv besides "all": summer→winter, winter→summer, old→new, new→old,
# day→night, night→day (mapillary_sls's evaluate.py --subtask); each a condition scored apart
SUBTASKS = ("s2w", "w2s", "o2n", "n2o", "d2n", "n2d")
POS_RADIUS, TRAIN_POS_RADIUS = 25.0, 10.0  # metres
# Added to the easting of the i-th city: no radius joins images of two cities (UTM zones overlap)
CITY_OFFSET = 1e8
_TRUE, _FALSE = {"true", "1"}, {"false", "0"}


def read_csv(path: Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """The named columns of one of MSLS's CSVs (header row, unnamed index column), as strings."""
    if not path.is_file():
        raise DatasetError(
            f"{path} not found: MSLS keeps {path.name} beside images/ in each {path.parent.name}/"
        )
    return read_columns(path, columns, optional)


def _flags(values: list[str], path: Path, column: str) -> np.ndarray:
    lowered = [v.strip().lower() for v in values]
    bad = next((v for v in lowered if v not in _TRUE | _FALSE), None)
    if bad is not None:
        raise DatasetError(f"{path}: column {column} holds {bad!r}, expected True or False")
    return np.array([v in _TRUE for v in lowered], dtype=bool)


def _aligned(keys: list[str], other: list[str], path: Path, other_path: Path) -> None:
    if keys == other:
        return
    if len(keys) != len(other):
        raise DatasetError(
            f"{other_path} has {len(other)} rows but {path} {len(keys)}; they must be row-aligned"
        )
    row = next(i for i, (a, b) in enumerate(zip(keys, other, strict=True)) if a != b)
    raise DatasetError(
        f"{other_path} row {row} is key {other[row]} but {path} row {row} is {keys[row]}; "
        "the CSVs of one folder must be row-aligned"
    )


def read_part(folder: Path, queries: bool) -> tuple[list[Path], np.ndarray, dict, dict[str, np.ndarray]]:
    """One city's database or query folder under the protocol: image paths, (N, 2) easting/northing,
    counts of what was left out and, for queries, the kept rows' subtask flags (``SUBTASKS`` present)."""
    raw = read_csv(folder / "raw.csv", ("key", "pano"))
    utm = read_csv(folder / "postprocessed.csv", ("key", "easting", "northing"))
    _aligned(raw["key"], utm["key"], folder / "raw.csv", folder / "postprocessed.csv")
    panorama = _flags(raw["pano"], folder / "raw.csv", "pano")
    keep = ~panorama
    counts = {"rows": len(keep), "panoramas": int(panorama.sum())}
    flags: dict[str, np.ndarray] = {}
    if queries:
        path = folder / "subtask_index.csv"
        subtask = read_csv(path, ("all",), optional=("key", *SUBTASKS))
        if "key" in subtask:  # its column order is unconfirmed: the key is checked where present
            _aligned(raw["key"], subtask["key"], folder / "raw.csv", path)
        elif len(subtask["all"]) != len(keep):
            raise DatasetError(
                f"{path} has {len(subtask['all'])} rows but raw.csv {len(keep)}; they must be row-aligned"
            )
        in_all = _flags(subtask["all"], path, "all")
        flags = {name: _flags(subtask[name], path, name) for name in SUBTASKS if name in subtask}
        counts["not_in_subtask_all"] = int((keep & ~in_all).sum())
        keep &= in_all
    try:
        coords = np.array([utm["easting"], utm["northing"]], dtype=np.float64).T  # (N, 2)
    except ValueError as exc:
        raise DatasetError(
            f"{folder / 'postprocessed.csv'}: easting/northing are not numbers ({exc})"
        ) from None
    kept = np.flatnonzero(keep)
    paths = [folder / "images" / f"{raw['key'][i]}.jpg" for i in kept]
    return paths, coords[kept], counts, {name: flag[kept] for name, flag in flags.items()}


class MSLSDataset(VPRDataset):
    """MSLS's train_val cities under the official protocol."""

    splits = ("train", "val", "test")

    def __init__(self, name: str, root: Path, cities: tuple[str, ...] | None = None):
        self.name, self.root, self.cities = name, Path(root), cities
        if not (self.root / "train_val").is_dir() and not (self.root / "test").is_dir():
            raise DatasetError(
                f"{self.root / 'train_val'} does not exist: MSLS is read as downloaded, "
                "<root>/train_val/<city>/{query,database}/ (pass --data-root, or msls:<root>)"
            )

    def load_split(self, split: str) -> Split:
        cities = self.cities or {"val": VAL_CITIES, "test": TEST_CITIES}.get(split, TRAIN_CITIES)
        gps_less = [c for c in cities if c in TEST_CITIES]
        if split == "test" and len(gps_less) == len(cities):
            return self.load_test(cities)
        if split == "test" or gps_less:
            raise DatasetError(
                f"MSLS test ({', '.join(gps_less or TEST_CITIES)}) has no GPS: it is scored on the challenge "
                "server; evaluate its cities alone (--split test, --no-labels), --split val (cph, sf), or "
                "other train_val cities with --cities"
            )
        paths: dict[str, list[Path]] = {"database": [], "query": []}
        coords: dict[str, list[np.ndarray]] = {"database": [], "query": []}
        counts: dict[str, dict] = {}
        subtasks: list[dict[str, np.ndarray]] = []  # each city's query flags
        for number, city in enumerate(cities):  # database and queries both city by city, in this order
            folder = self.root / "train_val" / city
            if not folder.is_dir():
                raise DatasetError(f"{folder} does not exist: no MSLS city {city!r} under {self.root}")
            for part in paths:
                part_paths, part_coords, counted, flags = read_part(folder / part, queries=part == "query")
                subtasks += [flags] if part == "query" else []
                part_coords[:, 0] += number * CITY_OFFSET
                paths[part] += part_paths
                coords[part].append(part_coords)
                counts[f"{city}/{part}"] = {**counted, "kept": len(part_paths)}
        default = VAL_CITIES if split == "val" else TRAIN_CITIES
        loaded = Split(
            dataset=self.name,
            name=split,
            database_paths=paths["database"],
            query_paths=paths["query"],
            database_utm=np.concatenate(coords["database"]),
            query_utm=np.concatenate(coords["query"]),
            pos_radius=POS_RADIUS,
            train_pos_radius=TRAIN_POS_RADIUS,
            train_neg_radius=POS_RADIUS,
            source=str(self.root / "train_val"),
            info={"layout": "msls", "cities": list(cities), "counts": counts},
            protocol=f"msls-{split}" if tuple(cities) == default else f"msls-{split}-{'+'.join(cities)}",
            # the subtasks every city's subtask_index.csv has, over the queries (scored apart)
            conditions={
                name: np.concatenate([flags[name] for flags in subtasks])
                for name in SUBTASKS
                if all(name in flags for flags in subtasks)
            },
        )
        loaded.leave_out_queries_without_positives()
        return loaded

    def load_test(self, cities: tuple[str, ...]) -> Split:
        """MSLS's test cities: ranked without ground truth (``--no-labels``) and scored by the challenge
        server, which reads the submission file (``vpr_bench.results.predictions``)."""
        paths: dict[str, list[Path]] = {"database": [], "query": []}
        counts: dict[str, dict] = {}
        for city in cities:
            folder = self.root / "test" / city
            if not folder.is_dir():
                raise DatasetError(
                    f"{folder} does not exist: MSLS test ({', '.join(cities)}) has no GPS: it is scored on "
                    f"the challenge server; its cities are read from {self.root / 'test'}/<city>/"
                )
            for part in paths:
                part_paths, counts[f"{city}/{part}"] = read_test_part(folder / part)
                paths[part] += part_paths
        name = "msls-test" if tuple(cities) == TEST_CITIES else f"msls-test-{'+'.join(cities)}"
        return Split(
            dataset=self.name,
            name="test",
            database_paths=paths["database"],
            query_paths=paths["query"],
            source=str(self.root / "test"),
            info={"layout": "msls", "cities": list(cities), "counts": counts, "submission": "msls"},
            protocol=name,
            no_labels=f"MSLS test ({', '.join(cities)}) has no GPS: it is scored on the challenge server",
        )


def read_test_part(folder: Path) -> tuple[list[Path], dict]:
    """One test city's database or query folder as mapillary_sls reads a city without GPS (its
    ``MSLS(mode="test")``, image to image): the keys of ``seq_info.csv`` whose row of
    ``subtask_index.csv`` is in ``all`` — queries and database alike; there is no panorama flag."""
    info = read_csv(folder / "seq_info.csv", ("key",))
    path = folder / "subtask_index.csv"
    subtask = read_csv(path, ("all",), optional=("key",))
    if "key" in subtask:
        _aligned(info["key"], subtask["key"], folder / "seq_info.csv", path)
    elif len(subtask["all"]) != len(info["key"]):
        raise DatasetError(
            f"{path} has {len(subtask['all'])} rows but seq_info.csv {len(info['key'])}; "
            "they must be row-aligned"
        )
    in_all = _flags(subtask["all"], path, "all")
    paths = [folder / "images" / f"{key}.jpg" for key, kept in zip(info["key"], in_all, strict=True) if kept]
    return paths, {"rows": len(in_all), "not_in_subtask_all": int((~in_all).sum()), "kept": len(paths)}


class ConvertedMSLS(FolderDataset):
    """datasets_vg's conversion of MSLS to the folder layout: a different query set, named apart."""

    def load_split(self, split: str) -> Split:
        loaded = super().load_split(split)
        loaded.protocol = f"msls-dvg-{split}"
        return loaded


def _msls(root: Path, options: DataConfig) -> VPRDataset:
    cities = tuple(c.strip() for c in (options.cities or "").split(",") if c.strip()) or None
    if not (root / "train_val").is_dir() and (root / "images").is_dir():
        if cities:
            raise DatasetError(
                f"--cities needs MSLS as downloaded (train_val/<city>/...); {root} is converted"
            )
        return ConvertedMSLS("msls", root)
    return MSLSDataset("msls", root, cities)


@register_dataset(
    "msls", "Mapillary SLS as downloaded, official 25 m protocol; val = cph+sf, train; --cities"
)
def msls(options: DataConfig) -> VPRDataset:
    return _msls(dataset_root(options, "msls"), options)


@register_dataset("msls:", "Mapillary SLS as downloaded at msls:<root> (train_val/<city>/...), as msls")
def msls_at(path: str, options: DataConfig) -> VPRDataset:
    return _msls(Path(path), options)
