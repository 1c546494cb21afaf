"""A training set of places, for place batches (P places × K images; ``training.places``).

GSV-Cities (``gsv_cities.py``) is such a set as downloaded: every image belongs to one place, places are
≥ 100 m apart. A Pittsburgh-style training split (database + queries with coordinates) becomes one with
``group_split``: each training query with every training image within the non-trivial radius (10 m) is
a candidate place, taken in query order; a candidate is kept when none of its images is within the
negative radius (25 m) of an image of a place already kept. So, as in GSV-Cities, the images of one
place show one spot, and any two images of two places are a true negative by the split's own rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from vpr_bench.datasets.split import Split
from vpr_bench.errors import DatasetError


@dataclass
class Places:
    dataset: str
    paths: list[Path]  # every image, by row
    labels: np.ndarray  # (N,) int64: the place of each row (GSV-Cities: its unique place id), -1: none
    members: list[np.ndarray]  # per place: its rows
    groups: list[tuple[str, np.ndarray]]  # (city, its places' indices): shuffled within a city each epoch
    num_database: int  # rows [0, num_database) are a split's database images, the rest its queries
    source: str = ""
    info: dict = field(default_factory=dict)
    name: str = "train"

    @property
    def num_places(self) -> int:
        return len(self.members)

    @property
    def place_labels(self) -> np.ndarray:
        """(num_places,) the label of each place."""
        return np.array([self.labels[rows[0]] for rows in self.members], dtype=np.int64)

    # a split's view, for what takes a training split (k-means initialisation, a teacher's descriptors)
    @property
    def database_paths(self) -> list[Path]:
        return self.paths[: self.num_database]

    @property
    def query_paths(self) -> list[Path]:
        return self.paths[self.num_database :]

    @property
    def num_queries(self) -> int:
        return len(self.paths) - self.num_database

    def validate(self, min_images: int, sample_images: int = 8, seed: int = 0) -> None:
        """Fail in one line on a set without two usable places, a place of fewer than ``min_images``
        images, or unreadable images (a sample is decoded)."""
        where = self.source or self.dataset
        if self.num_places < 2:
            raise DatasetError(
                f"{where}: {self.num_places} place(s) with ≥ {min_images} images; place batches need at "
                "least two (see --images-per-place)"
            )
        small = next((i for i, rows in enumerate(self.members) if len(rows) < min_images), None)
        if small is not None:
            raise DatasetError(
                f"{where}: place {small} has {len(self.members[small])} images, < {min_images}"
            )
        used = np.unique(np.concatenate(self.members))  # present: the readers checked every file
        from vpr_bench.datasets.images import check_readable

        picks = np.random.default_rng(seed).choice(used, size=min(sample_images, len(used)), replace=False)
        for row in sorted(picks):
            check_readable(self.paths[row])


def group_split(split: Split, min_images: int) -> Places:
    """The places of a training ``split`` (see the module docstring); candidates with fewer than
    ``min_images`` images are counted in ``info`` and left out."""
    where = split.source or f"{split.dataset}/{split.name}"
    if split.database_utm is None or split.query_utm is None:
        raise DatasetError(
            f"{where}: place batches group the training images by their coordinates, and this split has "
            "none; train it with --recipe triplet"
        )
    coords = np.concatenate([split.database_utm, split.query_utm]).reshape(
        split.num_database + split.num_queries, -1
    )
    tree = cKDTree(coords)
    owner = np.full(len(coords), -1, dtype=np.int64)
    members: list[np.ndarray] = []
    too_few = near_a_place = 0
    for row in range(split.num_database, len(coords)):  # each query, in order
        if owner[row] >= 0:
            continue
        rows = np.sort(np.asarray(tree.query_ball_point(coords[row], split.train_pos_radius), dtype=np.int64))
        near = tree.query_ball_point(coords[rows], split.train_neg_radius)
        if (owner[np.concatenate([np.asarray(n, dtype=np.int64) for n in near])] >= 0).any():
            near_a_place += 1
        elif len(rows) < min_images:
            too_few += 1
        else:
            owner[rows] = len(members)
            members.append(rows)
    info = {
        "grouped_from": split.protocol_name,
        "places": len(members),
        "images_in_places": int(sum(len(m) for m in members)),
        "candidates_with_fewer_images": too_few,
        "candidates_near_a_place": near_a_place,
        "radii_m": [split.train_pos_radius, split.train_neg_radius],
    }
    return Places(
        split.dataset,
        [*split.database_paths, *split.query_paths],
        owner,
        members,
        [("all", np.arange(len(members)))],
        split.num_database,
        source=where,
        info=info,
    )
