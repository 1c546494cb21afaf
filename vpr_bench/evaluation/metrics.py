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
    """A query counts at N if any of its top-N predictions is a positive; one with none is a miss."""
    if max(ns) > predictions.shape[1]:
        raise ValueError(
            f"Recall@{max(ns)} needs {max(ns)} predictions per query, got {predictions.shape[1]}"
        )
    first_hit = hits(predictions, gt).cumsum(axis=1) > 0  # (Q, K)
    return {f"R@{n}": float(100.0 * first_hit[:, n - 1].mean()) for n in ns}


@register_metric("mrr", "mean reciprocal rank of the first correct database image within the retrieved list")
def mean_reciprocal_rank(
    predictions: np.ndarray, gt: GroundTruth, ns: Sequence[int] = ()
) -> dict[str, float]:
    h = hits(predictions, gt)
    rank = np.where(h.any(axis=1), h.argmax(axis=1) + 1, np.inf)
    return {"MRR": float((1.0 / rank).mean())}
