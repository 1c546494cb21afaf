"""The one data model every reader produces: a split of database and query images with ground truth."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.errors import DatasetError

DEFAULT_POS_RADIUS = 25.0  # metres: evaluation positives (NetVLAD protocol)
DEFAULT_TRAIN_POS_RADIUS = 10.0  # metres: "non-trivial" training positives
# What the coordinates (and so every radius) measure
METRES = "metres (UTM)"  # (N, 2) easting, northing
FRAMES = "frame index"  # (N, 1) position along one traverse (seqNet's Nordland): |i − j| ≤ radius


@dataclass
class Split:
    dataset: str
    name: str  # train / val / test
    database_paths: list[Path]
    query_paths: list[Path]
    database_utm: np.ndarray | None = None  # (N, 2) east, north in metres, or (N, 1) frame positions
    query_utm: np.ndarray | None = None  # (M, 2) or (M, 1), as ``positions`` says
    pos_radius: float = DEFAULT_POS_RADIUS  # evaluation (``--pos-radius`` changes only this one)
    train_pos_radius: float = DEFAULT_TRAIN_POS_RADIUS
    train_neg_radius: float = DEFAULT_POS_RADIUS  # training negatives lie beyond it (the dataset's own)
    explicit_ground_truth: GroundTruth | None = None
    # database images sharing a group id count once in a ranked list (Tokyo 24/7: 12 cut-outs per panorama)
    database_groups: np.ndarray | None = None
    source: str = ""  # what it was read from, for messages and records
    info: dict = field(default_factory=dict)  # reader-specific facts worth recording (layout, ...)
    positions: str = METRES  # the unit of the coordinates and radii: METRES or FRAMES
    # the published protocol this split reproduces (``msls-val``, ``nordland-pnv``); "" → ``protocol_name``
    # derives one from dataset, split and radius (``pitts30k-test-25m``)
    protocol: str = ""
    queries_left_out: int = 0  # queries the protocol itself leaves out (MSLS: those without a positive)
    # per-query condition masks (name → (num_queries,) bool), scored apart (MSLS: s2w, w2s, o2n, …)
    conditions: dict[str, np.ndarray] = field(default_factory=dict)
    # a protocol's soft radius (VPR_Tutorial's GTsoft: wider, not penalised), in the unit of ``positions``
    soft_radius: float | None = None
    # why the split has no ground truth (MSLS's test cities, images without coordinates); "" if it has
    no_labels: str = ""

    def __post_init__(self) -> None:
        self._protocol_radius = self.pos_radius  # a later ``--pos-radius`` makes it another protocol

    @property
    def num_database(self) -> int:
        return len(self.database_paths)

    @property
    def num_queries(self) -> int:
        return len(self.query_paths)

    @property
    def protocol_name(self) -> str:
        """The name records carry (``protocol.name``) and tables group by: the reader's protocol, marked
        when ``--pos-radius`` changed its radius; else ``<dataset>-<split>-<radius>``."""
        if self.explicit_ground_truth is not None:
            return self.protocol or f"{self.dataset}-{self.name}-lists"
        radius = f"{self.pos_radius:g}{'m' if self.positions == METRES else 'frames'}"
        if not self.protocol:
            return f"{self.dataset}-{self.name}-{radius}"
        return self.protocol if self.pos_radius == self._protocol_radius else f"{self.protocol}@{radius}"

    @property
    def ground_truth_kind(self) -> str:
        return "list" if self.explicit_ground_truth is not None else "distance"

    def require_labels(self) -> None:
        """Fail in one line where the split has no ground truth, naming ``--no-labels``."""
        if self.no_labels:
            raise DatasetError(
                f"{self.no_labels}; evaluate it with --no-labels (the ranked predictions, no metrics)"
            )

    def ground_truth(self, radius: float | None = None) -> GroundTruth:
        """Evaluation ground truth: explicit lists if the dataset has them, else UTM within ``radius``."""
        self.require_labels()
        if self.explicit_ground_truth is not None:
            return self.explicit_ground_truth
        if self.database_utm is None or self.query_utm is None:
            raise DatasetError(f"{self.source or self.dataset}: no coordinates and no ground-truth lists")
        return GroundTruth.from_utm(self.database_utm, self.query_utm, radius or self.pos_radius)

    def training_positives(self) -> GroundTruth:
        """The non-trivial positives used for mining (``train_pos_radius``, 10 m by default)."""
        return self.ground_truth(self.train_pos_radius)

    def training_exclusion(self) -> GroundTruth:
        """Database images never drawn as a training negative: those within ``train_neg_radius`` (25 m),
        whatever the evaluation radius; the ground-truth lists where the dataset has no coordinates."""
        return self.ground_truth(self.train_neg_radius)

    def leave_out_queries_without_positives(self) -> None:
        """Keep only the queries with a positive at ``pos_radius`` (a protocol's rule, e.g. MSLS's
        official evaluation); ``queries_left_out`` counts the others, for the record."""
        gt = self.ground_truth()
        kept = np.flatnonzero(gt.counts > 0)
        self.queries_left_out += self.num_queries - len(kept)
        self.query_paths = [self.query_paths[i] for i in kept]
        self.conditions = {name: np.asarray(mask)[kept] for name, mask in self.conditions.items()}
        if self.query_utm is not None:
            self.query_utm = self.query_utm[kept]
        if self.explicit_ground_truth is not None:
            self.explicit_ground_truth = gt.subset(kept)

    def validate(self, sample_images: int = 8, seed: int = 0) -> None:
        """Fail early, with one clear message, on an empty split, missing or unreadable images."""
        where = self.source or f"{self.dataset}/{self.name}"
        if self.num_database == 0:
            raise DatasetError(f"{where}: the {self.name} split has no database images")
        if self.num_queries == 0:
            raise DatasetError(f"{where}: the {self.name} split has no query images")
        dims = 2 if self.positions == METRES else 1
        for kind, coords, n in (
            ("database", self.database_utm, self.num_database),
            ("query", self.query_utm, self.num_queries),
        ):
            if coords is not None and coords.shape != (n, dims):
                raise DatasetError(
                    f"{where}: {kind} coordinates have shape {coords.shape}, expected ({n}, {dims}) "
                    f"({self.positions})"
                )
        for name, mask in self.conditions.items():
            if len(mask) != self.num_queries:
                raise DatasetError(
                    f"{where}: condition {name} labels {len(mask)} queries, the split has {self.num_queries}"
                )
        missing = [p for p in (*self.database_paths, *self.query_paths) if not os.path.isfile(p)]
        if missing:
            first = ", ".join(str(p) for p in missing[:3])
            raise DatasetError(
                f"{where}: {len(missing)} of {self.num_database + self.num_queries} images are missing "
                f"(first: {first}); check --data-root and --layout"
            )
        from vpr_bench.datasets.images import check_readable

        rng = np.random.default_rng(seed)
        paths = [*self.database_paths, *self.query_paths]
        picks = {0, len(paths) - 1, *rng.integers(0, len(paths), size=max(0, sample_images - 2)).tolist()}
        for i in sorted(picks):
            check_readable(paths[i])
