"""Ground truth of a split: for each query, the database indices that count as correct.

Two kinds share one representation (CSR arrays): by distance (coordinates + a radius: UTM metres as in
NetVLAD / Pittsburgh / the deep-visual-geo-localization benchmark, or 1-D frame positions as in seqNet's
Nordland) and by explicit lists (VPR-Bench, GSV-Cities style). Everything downstream (Recall@N, mining,
reports) only sees ``GroundTruth``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class GroundTruth:
    indptr: np.ndarray  # (Q + 1,) int64: positives of query q are indices[indptr[q]:indptr[q + 1]]
    indices: np.ndarray  # (nnz,) int64 database indices, sorted within each query
    num_database: int
    kind: str  # "distance" or "list"
    radius: float | None = None  # for kind == "distance", in the coordinates' unit (metres or frames)

    @property
    def num_queries(self) -> int:
        return len(self.indptr) - 1

    def positives(self, query: int) -> np.ndarray:
        return self.indices[self.indptr[query] : self.indptr[query + 1]]

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    @property
    def queries_without_positives(self) -> np.ndarray:
        return np.flatnonzero(self.counts == 0)

    def keys(self) -> np.ndarray:
        """Sorted ``query * num_database + db_index`` codes, for vectorised membership tests."""
        rows = np.repeat(np.arange(self.num_queries, dtype=np.int64), self.counts)
        return rows * self.num_database + self.indices

    def subset(self, queries: np.ndarray) -> GroundTruth:
        """The ground truth of the given queries only, renumbered 0..len(queries)-1."""
        lists = [self.positives(int(q)) for q in queries]
        return GroundTruth.from_lists(lists, self.num_database, kind=self.kind, radius=self.radius)

    @classmethod
    def from_lists(
        cls, lists: list, num_database: int, kind: str = "list", radius: float | None = None
    ) -> GroundTruth:
        counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        indptr = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        flat = [np.sort(np.asarray(x, dtype=np.int64)) for x in lists if len(x)]
        indices = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= num_database):
            raise ValueError(f"ground-truth index out of range [0, {num_database})")
        return cls(indptr, indices, num_database, kind, radius)

    @classmethod
    def from_utm(cls, database_utm: np.ndarray, query_utm: np.ndarray, radius: float) -> GroundTruth:
        """Positives = database images within ``radius`` (boundary included; KD-tree radius search, no
        dense matrix). Coordinates of any dimension: (N, 2) UTM metres, or (N,) / (N, 1) frame positions,
        where the rule is |i − j| ≤ radius."""
        database_utm = _points(database_utm)
        query_utm = _points(query_utm)
        if database_utm.shape[1] != query_utm.shape[1]:
            dims = database_utm.shape[1], query_utm.shape[1]
            raise ValueError(f"database coordinates are {dims[0]}-D, query coordinates {dims[1]}-D")
        pairs = cKDTree(query_utm).sparse_distance_matrix(
            cKDTree(database_utm), radius, output_type="ndarray"
        )
        q_idx, db_idx = pairs["i"], pairs["j"]
        order = np.lexsort((db_idx, q_idx))
        q_idx, db_idx = q_idx[order], db_idx[order]
        indptr = np.zeros(len(query_utm) + 1, dtype=np.int64)
        np.cumsum(np.bincount(q_idx, minlength=len(query_utm)), out=indptr[1:])
        return cls(indptr, db_idx.astype(np.int64), len(database_utm), "distance", float(radius))


def _points(coordinates: np.ndarray) -> np.ndarray:
    """(N, D) float64: a 1-D array of positions is N points of one coordinate."""
    points = np.asarray(coordinates, dtype=np.float64)
    return points.reshape(-1, 1) if points.ndim == 1 else points
