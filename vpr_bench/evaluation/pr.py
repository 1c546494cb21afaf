"""Precision–recall metrics of single-best-match VPR: each query's top-1 match is accepted when its
distance is at most a threshold, and every threshold gives one precision and one recall. Registered
routines of a ``MetricInputs`` (``scoring.py``): ``pr`` (AUC-PR, R@100P and the curve) and ``ep``
(Extended Precision). Soft positives, where there are any, are not penalised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vpr_bench.evaluation.metrics import hits
from vpr_bench.evaluation.scoring import MetricInputs, MetricResult
from vpr_bench.registry import register_metric

CURVE_POINTS = 500  # the record keeps at most this many points of a curve (the metrics use all of them)


@dataclass(frozen=True)
class TopMatches:
    """Each query's top-1 match, the matches thresholds act on."""

    distance: np.ndarray  # (M,) the top-1 distance of each counted query
    correct: np.ndarray  # (M,) bool: the top-1 is a (hard) positive
    queries_with_positive: int  # |Q⁺|: the evaluated queries with a hard positive (recall's denominator)


def top_matches(inputs: MetricInputs) -> TopMatches:
    """The counted queries' top-1 matches. Not counted: a query without a result, and one whose top-1 is
    a soft positive but not a hard one (VPR_Tutorial's GTsoft: neither a true nor a false positive)."""
    top = inputs.indices[:, :1]
    correct = hits(top, inputs.positives)[:, 0]
    counted = top[:, 0] >= 0
    if inputs.soft_positives is not None:
        counted &= correct | ~hits(top, inputs.soft_positives)[:, 0]
    return TopMatches(
        inputs.distances[counted, 0].astype(np.float64),
        correct[counted],
        int((inputs.positives.counts > 0).sum()),
    )


def precision_recall(matches: TopMatches) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) at every distinct top-1 distance, most confident first, after the point
    (R = 0, P = 1) VPR_Tutorial's createPR starts from."""
    order = np.argsort(matches.distance, kind="stable")
    distance, correct = matches.distance[order], matches.correct[order]
    true_positives = np.cumsum(correct)
    accepted = np.arange(1, len(correct) + 1)
    last = np.r_[distance[1:] != distance[:-1], True]  # a threshold accepts all its ties at once
    precision = true_positives[last] / accepted[last]
    recall = true_positives[last] / matches.queries_with_positive
    return np.r_[1.0, precision], np.r_[0.0, recall]


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def thinned(precision: np.ndarray, recall: np.ndarray, points: int = CURVE_POINTS) -> dict:
    """The curve as the record keeps it: at most ``points`` points, both ends kept, 4 decimals."""
    keep = np.unique(np.linspace(0, len(recall) - 1, min(points, len(recall))).round().astype(int))
    return {
        "recall": [round(float(v), 4) for v in recall[keep]],
        "precision": [round(float(v), 4) for v in precision[keep]],
    }


@register_metric("pr", "precision-recall of the top-1 match over a distance threshold: AUC-PR, R@100P")
def precision_recall_metrics(inputs: MetricInputs) -> MetricResult:
    """Single-best-match precision–recall (Schubert et al., "Visual Place Recognition: A Tutorial", IEEE
    RA Magazine 2023; VPR_Tutorial ``evaluation/metrics.py``: ``createPR(matching="single")``,
    ``recallAt100precision``), with every distinct top-1 distance θ as a threshold instead of 100 evenly
    spaced ones:

        P(θ) = TP(θ) / (TP(θ) + FP(θ)),   R(θ) = TP(θ) / |Q⁺|,

    TP(θ) (FP(θ)): queries whose top-1 is (is not) a positive, at distance ≤ θ; Q⁺: the queries with a
    positive (a query without one can only be a false positive). AUC-PR = ∫ P dR by the trapezoidal
    rule from (R = 0, P = 1), as the tutorial's demo (``np.trapz(P, R)``); R@100P = 100 · max{R(θ) :
    P(θ) = 1} (%). A top-1 that is a soft positive but not a hard one is ignored (Eq. 6 of the tutorial;
    its code leaves GTsoft to multi-match, this is the single-match counterpart). Undefined (left out)
    when no query has a positive.
    """
    matches = top_matches(inputs)
    if matches.queries_with_positive == 0:
        return MetricResult({})
    precision, recall = precision_recall(matches)
    values = {"AUC-PR": trapezoid(precision, recall), "R@100P": 100.0 * float(recall[precision == 1].max())}
    return MetricResult(values, thinned(precision, recall))


@register_metric("ep", "Extended Precision (P_R0 + R_P100) / 2 of the top-1 matches, as VPR-Bench")
def extended_precision(inputs: MetricInputs) -> MetricResult:
    """Extended Precision (Ferrarini et al., "Exploring Performance Bounds of Visual Place Recognition
    Using Extended Precision", IEEE RA-L 5(2) 2020, the definition of EP; VPR-Bench, Zaffar et al., IJCV 2021,
    ``performance_comparison.compute_extendedprecision``):

        EP = (P_R0 + R_P100) / 2,

    on VPR-Bench's curve: labels "the top-1 is a positive", scores the top-1 similarity (scikit-learn's
    ``precision_recall_curve``), so that recall is the share of *correct top-1 matches* accepted, not of
    queries (as in ``pr``). P_R0: the precision at the strictest threshold (the queries tied at the
    smallest top-1 distance); R_P100: the largest recall at precision 1 — the correct matches closer
    than the nearest wrong one over all correct ones — and 0 when P_R0 < 1. In [0, 1]. Undefined (left
    out) without any counted top-1 match; soft-only top-1 matches are ignored as in ``pr``.
    """
    matches = top_matches(inputs)
    if not len(matches.distance):
        return MetricResult({})
    distance, correct = matches.distance, matches.correct
    precision_at_r0 = float(correct[distance == distance.min()].mean())
    recall_at_p100 = 0.0
    if precision_at_r0 == 1.0:
        nearest_wrong = distance[~correct].min(initial=np.inf)
        recall_at_p100 = float((correct & (distance < nearest_wrong)).sum() / correct.sum())
    return MetricResult({"EP": (precision_at_r0 + recall_at_p100) / 2.0})
