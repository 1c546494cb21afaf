"""Ranking metrics, each a registered routine of a ``MetricInputs`` (``scoring.py``): Recall@N, MRR@k and
MSLS's mAP@k. The precision–recall metrics are in ``pr.py``. Vectorised: no loop over queries."""

from __future__ import annotations

import numpy as np

from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.evaluation.scoring import MetricInputs, MetricResult
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


def recall_at_n(predictions: np.ndarray, gt: GroundTruth, ns=(1, 5, 10, 20)) -> dict[str, float]:
    """R@N in % for each N of ``ns`` (see ``recall``)."""
    within = np.zeros((predictions.shape[0], predictions.shape[1] + 1), dtype=bool)  # (Q, K + 1)
    within[:, 1:] = hits(predictions, gt).cumsum(axis=1) > 0  # within[:, j]: a positive in the top j
    any_positive = gt.counts > 0
    recall = {}
    for n in ns:
        correct = any_positive if n >= gt.num_database else within[:, min(n, predictions.shape[1])]
        recall[f"R@{n}"] = float(100.0 * correct.mean())
    return recall


@register_metric("recall", "Recall@N (%): queries with a positive among their N nearest database images")
def recall(inputs: MetricInputs) -> MetricResult:
    """Recall@N (NetVLAD, Arandjelović et al., CVPR 2016, Sec. 5.1): R@N = 100 · |{q : top-N(q) ∩ P(q) ≠
    ∅}| / |Q| over every evaluated query; one without a positive is a miss.

    A ranking shorter than N holds all the index could return (``search`` caps k at the database size,
    the engine at its number of places): a query then counts at N if it counts anywhere in the ranking,
    and, for N ≥ the database size, if it has any positive at all.
    """
    return MetricResult(recall_at_n(inputs.indices, inputs.positives, inputs.recall_at))


def reciprocal_ranks(predictions: np.ndarray, gt: GroundTruth) -> np.ndarray:
    """(Q,) 1 / rank of each query's first positive in ``predictions``, 0 where none is there."""
    h = hits(predictions, gt)
    return np.where(h.any(axis=1), 1.0 / (h.argmax(axis=1) + 1), 0.0)


@register_metric("mrr", "MRR@k: mean reciprocal rank of the first positive in the top k = max(--recall-at)")
def mean_reciprocal_rank(inputs: MetricInputs) -> MetricResult:
    """MRR@k = (1 / |Q⁺|) Σ_{q ∈ Q⁺} 1 / rank_q, rank_q the rank of q's first positive within the top k
    (a term 0 when there is none); k = max(--recall-at), the depth the search keeps, named in the key
    (``MRR@20``) so that only values over the same depth share a name (Voorhees, TREC-8 QA track, 1999).

    Q⁺: the evaluated queries with at least one positive; the others have no rank to score (the
    record's ``protocol.queries_without_positives`` counts them). Undefined (left out) when Q⁺ is empty.
    """
    k = max(inputs.recall_at)
    has_positive = inputs.positives.counts > 0
    if not has_positive.any():
        return MetricResult({})
    rr = reciprocal_ranks(inputs.indices[:, :k], inputs.positives)
    return MetricResult({f"MRR@{k}": float(rr[has_positive].mean())})


def positive_places(inputs: MetricInputs) -> np.ndarray:
    """(Q,) how many positives a ranking can hold per query: its positive images, or, where the database
    groups images (panoramas, one rank each), its positive groups."""
    gt = inputs.positives
    if inputs.database_groups is None:
        return gt.counts
    rows = np.repeat(np.arange(gt.num_queries, dtype=np.int64), gt.counts)
    groups = np.asarray(inputs.database_groups, dtype=np.int64)[gt.indices]
    pairs = np.unique(rows * (int(groups.max(initial=0)) + 1) + groups)
    return np.bincount(pairs // (int(groups.max(initial=0)) + 1), minlength=gt.num_queries)


@register_metric("map", "mAP@k for each k of --recall-at, as MSLS's official evaluation computes it")
def mean_average_precision(inputs: MetricInputs) -> MetricResult:
    """mAP@k of mapillary_sls (Warburg et al., CVPR 2020; ``mapillary_sls/utils/eval.py``, ``apk``):

        AP@k(q) = (1 / min(|P(q)|, k)) · Σ_{i ≤ k} rel_q(i) · (Σ_{j ≤ i} rel_q(j)) / i,

    rel_q(i) = 1 when the i-th result is a positive, and mAP@k the mean of AP@k over Q⁺, the queries
    with a positive (MSLS's evaluation scores only those; AP divides by |P(q)|). Where the database
    groups images (Tokyo 24/7's panoramas, one rank each), |P(q)| counts positive groups.
    """
    has_positive = inputs.positives.counts > 0
    if not has_positive.any():
        return MetricResult({})
    relevant = hits(inputs.indices, inputs.positives).astype(np.float64)  # (Q, K)
    precision_at = relevant.cumsum(axis=1) / np.arange(1, relevant.shape[1] + 1)  # (Q, K)
    gained = (relevant * precision_at).cumsum(axis=1)  # (Q, K): Σ_{i ≤ j} rel(i) · P@i
    places = positive_places(inputs)
    values = {}
    for k in inputs.recall_at:
        depth = min(k, relevant.shape[1])
        ap = gained[:, depth - 1] / np.maximum(np.minimum(places, k), 1) if depth else 0 * places
        values[f"mAP@{k}"] = float(ap[has_positive].mean())
    return MetricResult(values)
