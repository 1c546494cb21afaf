"""Mining on hand-built descriptors: a street of database images every 5 m, queries on it."""

import numpy as np

from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.training.mining import HardNegativeMiner


def setup(n_db=20):
    db_utm = np.stack([np.arange(n_db) * 5.0, np.zeros(n_db)], axis=1)  # 0, 5, 10, ... 95 m
    q_utm = np.array([[10.0, 0.0], [60.0, 0.0], [200.0, 0.0]])  # the last has no positive at all
    train = GroundTruth.from_utm(db_utm, q_utm, 10.0)
    near = GroundTruth.from_utm(db_utm, q_utm, 25.0)
    return train, near


def test_nearest_positive_in_descriptor_space_and_violating_negatives():
    train, near = setup()
    db = np.zeros((20, 4), dtype=np.float32)
    db[:, 0] = 10.0  # far from every query by default
    q = np.zeros((3, 4), dtype=np.float32)
    # query 0 (at 10 m): non-trivial positives are db 0..4 (0–20 m). Make db 4 (20 m) the closest in
    # descriptor space, db 2 (same place) farther: mining must pick 4.
    db[4] = [0.1, 0, 0, 0]
    db[2] = [0.3, 0, 0, 0]
    # negatives of query 0 (beyond 25 m: db 8..19): db 9 violates (0.2 < 0.1 + 0.3), db 12 does not (0.5)
    db[9] = [0, 0.2, 0, 0]
    db[12] = [0, 0.5, 0, 0]
    db[6] = [0, 0.05, 0, 0]  # 30 m away?  no: 20 m from query 0 → within 25 m, never a negative
    # query 1 (at 60 m): positive db 12 (60 m); nothing violates: skipped
    q[1] = [0, 0.5, 0, 0]
    miner = HardNegativeMiner(train, near, negatives=3, negative_samples=200, mining_margin=0.3)
    out = miner.mine(q, db, np.random.default_rng(0))
    assert out.queries.tolist() == [0]
    assert out.positives.tolist() == [4]
    assert out.negatives[0, 0] == 9 and set(out.negatives[0, 1:]) == {-1}
    assert out.skipped == 1 and out.without_positive == 1
    assert miner.cache[0, 0] == 9  # remembered as a previous hard negative


def test_previous_hard_negatives_are_reconsidered():
    train, near = setup()
    db = np.full((20, 4), 10.0, dtype=np.float32)
    q = np.zeros((3, 4), dtype=np.float32)
    db[2] = [0.3, 0, 0, 0]
    db[15] = [0, 0.1, 0, 0]  # a violating negative that random sampling (size 1) will likely miss
    miner = HardNegativeMiner(train, near, negatives=2, negative_samples=2, mining_margin=0.3)
    miner.cache[0] = [15, -1]
    out = miner.mine(q, db, np.random.default_rng(1), rows=np.array([0]))
    assert out.negatives[0].tolist()[0] == 15


def test_only_the_given_rows_are_mined():
    train, near = setup()
    rng = np.random.default_rng(0)
    db, q = rng.normal(size=(20, 8)).astype(np.float32), rng.normal(size=(3, 8)).astype(np.float32)
    miner = HardNegativeMiner(train, near, negatives=2, negative_samples=50, mining_margin=10.0)
    out = miner.mine(q, db, np.random.default_rng(0), rows=np.array([1]))
    assert out.queries.tolist() == [1]
    assert (out.negatives[0] >= 0).all()
    far = set(range(20)) - set(near.positives(1).tolist())
    assert set(out.negatives[0].tolist()) <= far
