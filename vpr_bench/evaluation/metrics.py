"""Retrieval metrics over ranked predictions. Each is registered; the engine reports all of them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.registry import register_metric


def hits(predictions: np.ndarray, gt: GroundTruth) -> np.ndarray:
    """(Q, K) bool: is the k-th retrieved database image a positive of its query? No loop over queries."""
    q = np.arange(predictions.shape[0], dtype=np.int64)[:, None]
    keys = q * gt.num_database + predictions.astype(np.int64)
    positives = gt.keys()  # sorted by construction (CSR, sorted within rows)
    if not len(positives):
        return np.zeros(keys.shape, dtype=bool)
    where = np.minimum(np.searchsorted(positives, keys), len(positives) - 1)
    return (positives[where] == keys) & (predictions >= 0)  # -1: no result (padding)


@register_metric("recall", "Recall@N: % of queries with a positive among the N nearest database images")
def recall_at_n(
    predictions: np.ndarray, gt: GroundTruth, ns: Sequence[int] = (1, 5, 10, 20)
) -> dict[str, float]:
    """A query counts at N if any of its top-N predictions is a positive; one with none is a miss.

    A ranking shorter than N holds all the index could return (``search`` caps k at the database size,
    the engine at its number of places): a query then counts at N if it counts anywhere in the ranking,
    and, for N ≥ the database size, if it has any positive at all.
    """
    within = np.zeros((predictions.shape[0], predictions.shape[1] + 1), dtype=bool)  # (Q, K + 1)
    within[:, 1:] = hits(predictions, gt).cumsum(axis=1) > 0  # within[:, j]: a positive in the top j
    any_positive = gt.counts > 0
    recall = {}
    for n in ns:
        correct = any_positive if n >= gt.num_database else within[:, min(n, predictions.shape[1])]
        recall[f"R@{n}"] = float(100.0 * correct.mean())
    return recall


@register_metric("mrr", "mean reciprocal rank of the first correct database image within the retrieved list")
def mean_reciprocal_rank(
    predictions: np.ndarray, gt: GroundTruth, ns: Sequence[int] = ()
) -> dict[str, float]:
    h = hits(predictions, gt)
    rank = np.where(h.any(axis=1), h.argmax(axis=1) + 1, np.inf)
    return {"MRR": float((1.0 / rank).mean())}
