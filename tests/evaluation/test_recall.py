import numpy as np
import pytest

from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.evaluation.matching import search
from vpr_bench.evaluation.metrics import mean_reciprocal_rank, recall_at_n


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
    assert ms >= 0


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
    assert mean_reciprocal_rank(predictions, gt)["MRR"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)


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


def test_database_smaller_than_n_pads_with_misses():
    db = np.eye(3, dtype=np.float32)
    _, predictions, _ = search(db, db, 5)
    assert predictions.shape == (3, 5) and (predictions[:, 3:] == -1).all()
    gt = GroundTruth.from_lists([[0], [1], [2]], 3)
    assert recall_at_n(predictions, gt, (1, 5)) == {"R@1": 100.0, "R@5": 100.0}
