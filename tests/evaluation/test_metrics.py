"""Every built-in metric on a case small enough to compute by hand: 4 queries, 5 database images.

query  positives  ranking          top-1 distance
q0     {1, 3}     1 0 3 2 4        0.10  correct
q1     {4}        2 4 0 1 3        0.20  wrong (its positive is 2nd)
q2     {0}        0 2 1 3 4        0.30  correct
q3     {}         3 1 0 2 4        0.15  wrong (it has no positive at all)
"""

import numpy as np
import pytest

from vpr_bench import load_all
from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.datasets.split import Split
from vpr_bench.errors import ConfigError
from vpr_bench.evaluation.metrics import mean_average_precision, mean_reciprocal_rank, recall
from vpr_bench.evaluation.pr import extended_precision, precision_recall_metrics
from vpr_bench.evaluation.scoring import MetricInputs, MetricResult, score, soft_ground_truth
from vpr_bench.registry import METRICS, registration_source

RANKING = np.array([[1, 0, 3, 2, 4], [2, 4, 0, 1, 3], [0, 2, 1, 3, 4], [3, 1, 0, 2, 4]])
TOP1 = np.array([0.10, 0.20, 0.30, 0.15], dtype=np.float32)
POSITIVES = GroundTruth.from_lists([[1, 3], [4], [0], []], num_database=5)


def tiny(soft=None, recall_at=(1, 2, 3)) -> MetricInputs:
    distances = TOP1[:, None] + 0.01 * np.arange(5, dtype=np.float32)  # ascending along each ranking
    return MetricInputs(RANKING, distances, POSITIVES, soft, recall_at)


def test_recall_at_n():
    # R@1: q0, q2; R@2 and R@3: q1 too; q3 (no positive) is a miss throughout
    assert recall(tiny()).values == {"R@1": 50.0, "R@2": 75.0, "R@3": 75.0}


def test_mrr_over_the_queries_with_a_positive():
    # 1/1 (q0) + 1/2 (q1) + 1/1 (q2), over 3: q3 has no positive and no rank to score
    assert mean_reciprocal_rank(tiny()).values == {"MRR@3": pytest.approx(2.5 / 3)}
    assert set(mean_reciprocal_rank(tiny(recall_at=(1, 5))).values) == {"MRR@5"}


def test_map_at_k_as_mapillary_sls():
    # AP@k = Σ_{i≤k} rel(i)·P@i / min(|P|, k)
    # q0: rel 1 0 1 → AP@1 = 1/1, AP@2 = 1/2, AP@3 = (1 + 2/3)/2; q1: rel 0 1 → 0, (1/2)/1, (1/2)/1;
    # q2: rel 1 → 1, 1, 1; q3 left out (MSLS scores only queries with a positive)
    values = mean_average_precision(tiny()).values
    assert values == pytest.approx(
        {"mAP@1": 2 / 3, "mAP@2": (0.5 + 0.5 + 1) / 3, "mAP@3": ((1 + 2 / 3) / 2 + 0.5 + 1) / 3}
    )


def test_map_counts_positive_panoramas_where_the_database_groups_images():
    # db 0-1 one panorama, 2-3 another, 4 alone (a panorama's cut-outs share its position: all or none
    # are positives); q0's positives are two panoramas, q1's one
    gt = GroundTruth.from_lists([[0, 1, 2, 3], [0, 1]], num_database=5)
    ranking = np.array([[1, 2, 4], [0, 2, 4]])  # one image per panorama, as collapse_groups leaves it
    inputs = MetricInputs(ranking, np.zeros((2, 3), np.float32), gt, None, (3,), np.array([0, 0, 1, 1, 2]))
    # q0: rel 1 1 0 → (1 + 1)/min(2, 3) = 1 (not 2/3); q1: rel 1 0 0 → 1/min(1, 3) = 1 (not 1/2)
    assert mean_average_precision(inputs).values == {"mAP@3": pytest.approx(1.0)}


def test_precision_recall_by_hand():
    # top-1s by distance: q0 ✓ 0.10, q3 ✗ 0.15, q1 ✗ 0.20, q2 ✓ 0.30; recall over |Q⁺| = 3 queries
    # (R, P): (0, 1) start, (1/3, 1), (1/3, 1/2), (1/3, 1/3), (2/3, 1/2)
    result = precision_recall_metrics(tiny())
    assert result.curve["recall"] == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3, 2 / 3], abs=1e-4)
    assert result.curve["precision"] == pytest.approx([1, 1, 1 / 2, 1 / 3, 1 / 2], abs=1e-4)
    # trapezoids: 1/3 · 1 + 0 + 0 + 1/3 · (1/3 + 1/2)/2 = 17/36
    assert result.values == pytest.approx({"AUC-PR": 17 / 36, "R@100P": 100 / 3})


def test_extended_precision_by_hand():
    # P_R0: the nearest top-1 (q0) is right → 1; R_P100: correct matches nearer than the nearest wrong one
    # (0.15) over all correct matches = 1/2; EP = (1 + 1/2)/2
    assert extended_precision(tiny()).values == pytest.approx({"EP": 0.75})


def test_extended_precision_is_half_p_r0_when_the_nearest_match_is_wrong():
    distances = np.array([[0.1], [0.1], [0.5]], np.float32)  # q0 and q1 tied at the strictest threshold
    gt = GroundTruth.from_lists([[0], [9], [0]], num_database=10)
    inputs = MetricInputs(np.array([[0], [0], [0]]), distances, gt, None, (1,))
    # P_R0 = 1/2 (one of the two tied is right) < 1, so R_P100 = 0 (VPR-Bench)
    assert extended_precision(inputs).values == pytest.approx({"EP": 0.25})


def test_soft_positives_are_ignored_not_false():
    # q1's top-1 (db 2) and q3's (db 3) are soft positives only: neither true nor false positives
    soft = GroundTruth.from_lists([[1, 3], [2, 4], [0], [3]], num_database=5)
    result = precision_recall_metrics(tiny(soft))
    # left: q0 ✓ 0.10, q2 ✓ 0.30 → (0, 1), (1/3, 1), (2/3, 1); recall still over the 3 queries with a positive
    assert result.values == pytest.approx({"AUC-PR": 2 / 3, "R@100P": 200 / 3})
    assert extended_precision(tiny(soft)).values == pytest.approx({"EP": 1.0})  # no wrong match left
    assert recall(tiny(soft)).values == recall(tiny()).values  # Recall@N uses the hard positives only


def test_undefined_values_are_left_out():
    gt = GroundTruth.from_lists([[], []], num_database=5)
    inputs = MetricInputs(RANKING[:2], np.zeros((2, 5), np.float32), gt, None, (1,))
    assert mean_reciprocal_rank(inputs).values == {} and mean_average_precision(inputs).values == {}
    assert precision_recall_metrics(inputs).values == {}


def test_score_selects_runs_per_condition_and_takes_a_plugin_metric():
    load_all()
    with registration_source("plugin:test"):

        @METRICS.register("test-top1-distance", "mean top-1 distance (a plugin's metric)")
        def mean_top1(inputs: MetricInputs) -> dict:
            return {"top1_distance": float(inputs.distances[:, 0].mean())}

    try:
        conditions = {"night": np.array([True, False, True, False]), "empty": np.zeros(4, bool)}
        scores = score(tiny(), ("mrr", "test-top1-distance"), conditions)
        assert set(scores.values) == {"R@1", "R@2", "R@3", "MRR@3", "top1_distance"}  # recall always
        assert scores.values["top1_distance"] == pytest.approx(0.1875)
        assert scores.by_condition["night"]["R@1"] == 100.0  # q0 and q2: both right at 1
        assert scores.condition_sizes == {"night": 2, "empty": 0} and "empty" not in scores.by_condition
        everything = score(tiny(), ("all",))
        assert {"AUC-PR", "R@100P", "EP", "mAP@3", "MRR@3"} <= set(everything.values)
        assert set(everything.curves) == {"pr"}
        with pytest.raises(ConfigError, match=r"^--metrics: unknown metric 'nope'; valid: ep, map, mrr"):
            score(tiny(), ("nope",))
    finally:
        METRICS.remove_source("plugin:test")
    assert isinstance(precision_recall_metrics(tiny()), MetricResult)


def test_soft_ground_truth_needs_coordinates_and_a_wider_radius(tmp_path):
    utm = np.array([[0.0, 0.0], [20.0, 0.0], [40.0, 0.0]])
    split = Split("d", "test", [tmp_path / f"{i}.jpg" for i in range(3)], [tmp_path / "q.jpg"],
                  utm, utm[:1])  # fmt: skip
    assert soft_ground_truth(split, 25.0, None) is None
    soft = soft_ground_truth(split, 25.0, 50.0)
    assert soft.positives(0).tolist() == [0, 1, 2] and soft.radius == 50.0
    split.soft_radius = 45.0  # a protocol's own soft radius
    assert soft_ground_truth(split, 25.0, None).positives(0).tolist() == [0, 1, 2]
    with pytest.raises(ConfigError, match="must be ≥ the positive radius 25"):
        soft_ground_truth(split, 25.0, 10.0)
    split.explicit_ground_truth = GroundTruth.from_lists([[0]], 3)
    with pytest.raises(ConfigError, match="has ground-truth lists, not coordinates"):
        soft_ground_truth(split, None, 50.0)
