import numpy as np

from vpr_bench.datasets.ground_truth import GroundTruth


def test_from_utm_equals_brute_force():
    rng = np.random.default_rng(0)
    db, q = rng.uniform(0, 200, (300, 2)), rng.uniform(0, 200, (50, 2))
    db[7] = q[3]  # a coincident pair must count
    gt = GroundTruth.from_utm(db, q, 25.0)
    dist = np.linalg.norm(q[:, None] - db[None], axis=2)
    for i in range(len(q)):
        assert gt.positives(i).tolist() == np.flatnonzero(dist[i] <= 25.0).tolist()
    assert 7 in gt.positives(3)
    assert gt.kind == "distance" and gt.radius == 25.0


def test_from_lists_and_queries_without_positives():
    gt = GroundTruth.from_lists([[2, 0], [], [1]], num_database=3)
    assert gt.positives(0).tolist() == [0, 2]
    assert gt.queries_without_positives.tolist() == [1]
    assert gt.subset(np.array([2, 0])).positives(0).tolist() == [1]
