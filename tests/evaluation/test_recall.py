import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.evaluation.matching import search
from vpr_bench.evaluation.metrics import mean_reciprocal_rank, recall_at_n
from vpr_bench.evaluation.scoring import MetricInputs


def brute_force_recall(db, q, positives, ns):
    dist = ((q[:, None, :] - db[None, :, :]) ** 2).sum(-1)
    order = np.argsort(dist, axis=1, kind="stable")
    out = {}
    for n in ns:
        correct = [len(set(order[i, :n]) & set(positives[i])) > 0 for i in range(len(q))]
        out[f"R@{n}"] = 100.0 * np.mean(correct)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    db = rng.normal(size=(500, 16)).astype(np.float32)
    q = rng.normal(size=(80, 16)).astype(np.float32)
    positives = [rng.choice(500, size=rng.integers(0, 30), replace=False) for _ in range(80)]
    gt = GroundTruth.from_lists(positives, 500)
    _, predictions, ms = search(db, q, 20)
    expected = brute_force_recall(db, q, positives, (1, 5, 10, 20))
    assert recall_at_n(predictions, gt, (1, 5, 10, 20)) == pytest.approx(expected)
    assert 0 < ms < 1000  # a real, per-query figure: 80 queries × 500 images take microseconds each


def test_ms_per_query_is_the_search_time_over_the_number_of_queries(monkeypatch):
    from vpr_bench.evaluation import matching

    ticks = iter([10.0, 12.0])  # the batched search starts at 10 s and ends at 12 s
    monkeypatch.setattr(matching, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    rng = np.random.default_rng(0)
    db, q = rng.normal(size=(500, 16)).astype(np.float32), rng.normal(size=(80, 16)).astype(np.float32)
    _, _, ms = search(db, q, 20)
    assert ms == pytest.approx(2000.0 / 80)  # 2 s over 80 queries, in milliseconds


def test_search_matches_numpy_neighbours():
    rng = np.random.default_rng(5)
    db, q = rng.normal(size=(200, 8)).astype(np.float32), rng.normal(size=(30, 8)).astype(np.float32)
    _, predictions, _ = search(db, q, 5)
    dist = ((q[:, None] - db[None]) ** 2).sum(-1)
    assert (predictions == np.argsort(dist, axis=1)[:, :5]).all()


def test_hand_made_case_and_mrr():
    gt = GroundTruth.from_lists([[3], [0, 1], []], num_database=4)
    predictions = np.array([[2, 3, 0], [1, 2, 3], [0, 1, 2]])
    assert recall_at_n(predictions, gt, (1, 2)) == pytest.approx({"R@1": 100 / 3, "R@2": 200 / 3})
    inputs = MetricInputs(predictions, np.zeros(predictions.shape, np.float32), gt, recall_at=(1, 3))
    # over the queries with a positive (the third has none): named by the depth it reads
    assert mean_reciprocal_rank(inputs).values == {"MRR@3": pytest.approx((0.5 + 1.0) / 2)}


def test_collapse_groups_equals_a_loop():
    from vpr_bench.evaluation.matching import collapse_groups

    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(30), 12)
    indices = np.stack([rng.permutation(360)[:60] for _ in range(20)])
    indices[0, -5:] = -1  # faiss's padding
    distances = np.sort(rng.random(indices.shape).astype(np.float32), axis=1)
    d, idx = collapse_groups(distances, indices, groups, 10)
    for row in range(len(indices)):
        seen, expected = set(), []
        for i in indices[row]:
            if i >= 0 and groups[i] not in seen:
                seen.add(groups[i])
                expected.append(i)
        expected = (expected + [-1] * 10)[:10]
        assert idx[row].tolist() == expected


def test_database_smaller_than_n_ranks_it_all_without_padding():
    db = np.eye(3, dtype=np.float32)
    queries = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    distances, predictions, _ = search(db, queries, 10)  # Recall@10 on a 3-image database
    assert predictions.shape == distances.shape == (4, 3)  # k capped: no faiss -1 / 3.4e38 padding
    assert (np.sort(predictions, axis=1) == np.arange(3)).all() and np.isfinite(distances).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no float16 overflow (older predictions.npz kept float16)
        assert np.isfinite(distances.astype(np.float16)).all()
    # query 0 is right at 1; queries 1 and 3 only further down; query 2 has no positive at all
    gt = GroundTruth.from_lists([[0], [2], [], [1]], 3)
    assert recall_at_n(predictions, gt, (1, 5, 10)) == {"R@1": 25.0, "R@5": 75.0, "R@10": 75.0}
    assert recall_at_n(predictions, gt, (3,)) == {"R@3": 75.0}  # N = the database size


def test_recall_beyond_the_database_is_any_positive_whatever_the_ranking_holds():
    gt = GroundTruth.from_lists([[2], [], [1]], num_database=3)
    # an approximate index may leave ranks empty (-1): never an index (query 1's -1 would otherwise
    # read as query 0's database image 2), and at N >= 3 the whole database is within reach
    predictions = np.array([[0, -1], [-1, -1], [1, 0]])
    assert recall_at_n(predictions, gt, (1, 2, 3, 10)) == pytest.approx(
        {"R@1": 100 / 3, "R@2": 100 / 3, "R@3": 200 / 3, "R@10": 200 / 3}
    )


def test_ranking_of_all_places_shorter_than_n_counts_as_it_stands():
    # 2 panoramas of 3 cut-outs each, collapsed: 2 ranks, every place listed; N = 5 < 6 images
    gt = GroundTruth.from_lists([[3, 4, 5], []], num_database=6)
    predictions = np.array([[0, 3], [3, 0]])
    assert recall_at_n(predictions, gt, (1, 2, 5)) == {"R@1": 0.0, "R@2": 50.0, "R@5": 50.0}
