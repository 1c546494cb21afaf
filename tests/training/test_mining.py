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


def test_drawn_candidates_are_distinct_allowed_and_exactly_as_many_as_asked():
    from vpr_bench.training.mining import draw_negatives

    rng = np.random.default_rng(0)
    allowed = rng.random((50, 300)) > 0.3  # ≈ 210 allowed columns per row
    allowed[7, :] = False
    allowed[7, [3, 9, 11]] = True  # a row with only 3 allowed columns
    drawn = draw_negatives(allowed, 100, rng)
    assert drawn.shape == (50, 100)
    for row in range(50):
        picked = drawn[row][drawn[row] >= 0]
        assert allowed[row, picked].all()
        assert len(set(picked.tolist())) == len(picked) == min(100, allowed[row].sum())
    assert sorted(drawn[7][drawn[7] >= 0].tolist()) == [3, 9, 11]
    # uniform: over many draws every allowed column of a row is picked about equally often (a chi-square
    # statistic with k − 1 ≈ 210 degrees of freedom: mean ≈ 210, sd ≈ 20; picking the first 20 allowed
    # columns every time would give ≈ 2000 × 210)
    counts = np.zeros(300)
    for _ in range(2000):
        counts[draw_negatives(allowed[:1], 20, rng)[0]] += 1
    k = allowed[0].sum()
    expected = 2000 * 20 / k
    chi_square = ((counts[allowed[0]] - expected) ** 2 / expected).sum()
    assert chi_square < k + 8 * np.sqrt(2 * k) and counts[~allowed[0]].sum() == 0


def test_the_miner_draws_exactly_negative_samples_from_beyond_the_negative_radius():
    """A long street (db every 5 m), 5 candidates per query, everything violating: each query's chosen
    negatives are then exactly its 5 drawn candidates — all beyond 25 m, none repeated. (Drawing from
    the whole database and filtering afterwards left fewer near the middle of the street.)"""
    n_db = 30
    db_utm = np.stack([np.arange(n_db) * 5.0, np.zeros(n_db)], axis=1)
    q_utm = np.stack([np.arange(5, 25) * 5.0 + 1.0, np.zeros(20)], axis=1)
    train = GroundTruth.from_utm(db_utm, q_utm, 10.0)
    near = GroundTruth.from_utm(db_utm, q_utm, 25.0)
    rng = np.random.default_rng(0)
    db, q = rng.normal(size=(n_db, 8)).astype(np.float32), rng.normal(size=(20, 8)).astype(np.float32)
    miner = HardNegativeMiner(train, near, negatives=5, negative_samples=5, mining_margin=1e6)
    out = miner.mine(q, db, np.random.default_rng(1))
    assert len(out.queries) == 20
    for query, negatives in zip(out.queries, out.negatives, strict=True):
        assert len(set(negatives.tolist())) == 5 and (negatives >= 0).all()
        assert (np.abs(db_utm[negatives, 0] - q_utm[query, 0]) > 25.0).all()


def test_a_10m_evaluation_radius_leaves_training_negatives_beyond_25m(synthetic_root):
    """``--pos-radius 10`` (the release's evaluation protocol) changes the evaluation ground truth only."""

    from tests.conftest import tiny_config
    from vpr_bench.datasets import load_split
    from vpr_bench.training.trainer import Trainer

    cfg = tiny_config(**{"data.data_root": str(synthetic_root), "data.pos_radius": 10.0})
    _, train_split = load_split(cfg.data, "train")
    assert train_split.ground_truth(cfg.data.pos_radius).radius == 10.0
    from vpr_bench.methods import build_method

    trainer = Trainer(build_method(cfg.model), cfg, train_split, train_split, "cpu", None)
    assert trainer.miner.never_negative.radius == 25.0 and trainer.miner.train_positives.radius == 10.0
    rng = np.random.default_rng(0)
    dim = 8
    q = rng.normal(size=(train_split.num_queries, dim)).astype(np.float32)
    db = rng.normal(size=(train_split.num_database, dim)).astype(np.float32)
    trainer.miner.mining_margin = 1e6  # everything violates: every drawn candidate can be chosen
    out = trainer.miner.mine(q, db, rng)
    assert len(out.queries)
    chosen = out.negatives[out.negatives >= 0]
    queries = np.repeat(out.queries, (out.negatives >= 0).sum(axis=1))
    gaps = np.linalg.norm(train_split.database_utm[chosen] - train_split.query_utm[queries], axis=1)
    assert gaps.min() > 25.0
