"""Batched hard-negative mining vs the original per-item HDF5 path, on a 10k-image database cache.

The original (pytorch-NetVlad's ``QueryDatasetFromStruct.__getitem__``, kept by STUN and the TSCM
release) opens the HDF5 descriptor cache for every query inside the DataLoader, reads the query, its
non-trivial positives and ~1000 sampled negatives, and fits two scikit-learn NearestNeighbors. It is
re-implemented faithfully below. Both mine the same queries of the same cache; the script prints the
time per query of each and the ratio (target: batched ≥ 20× faster).

    python benchmarks/mining.py [--database 10000] [--queries 2000] [--dim 2048] [--per-item 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from sklearn.neighbors import NearestNeighbors

from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.training.mining import HardNegativeMiner

NEG, SAMPLES, MARGIN = 10, 1000, 0.1


def make_cache(n_db: int, n_q: int, dim: int, path: Path, rng: np.random.Generator):
    """Street-like coordinates (so positives and negatives exist) and random unit descriptors."""
    db_utm = np.stack([np.arange(n_db) * 5.0 % 5000, (np.arange(n_db) * 5.0 // 5000) * 1000], axis=1)
    q_utm = db_utm[rng.integers(0, n_db, n_q)] + rng.uniform(-4, 4, size=(n_q, 2))
    features = rng.normal(size=(n_db + n_q, dim)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("features", data=features)
    return db_utm, q_utm, features


def original_per_item(
    cache: Path,
    n_db: int,
    nontrivial: list,
    potential_neg: list,
    neg_cache: list,
    index: int,
    rng: np.random.Generator,
):
    with h5py.File(cache, mode="r") as h5:
        feats = h5.get("features")
        q = feats[index + n_db]
        pos_feat = feats[nontrivial[index].tolist()]
        knn = NearestNeighbors(n_jobs=-1)
        knn.fit(pos_feat)
        d_pos, pos_nn = knn.kneighbors(q.reshape(1, -1), 1)
        d_pos = d_pos.item()
        positive = nontrivial[index][pos_nn[0]].item()
        sample = rng.choice(potential_neg[index], SAMPLES)
        sample = np.unique(np.concatenate([neg_cache[index], sample])).astype(np.int64)
        neg_feat = feats[sample.tolist()]
        knn.fit(neg_feat)
        d_neg, neg_nn = knn.kneighbors(q.reshape(1, -1), NEG * 10)
        violating = d_neg.reshape(-1) < d_pos + MARGIN**0.5
        if violating.sum() < 1:
            return None
        negatives = sample[neg_nn.reshape(-1)[violating][:NEG]]
        neg_cache[index] = negatives
        return positive, negatives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--per-item", type=int, default=200, help="queries timed on the per-item path")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache.hdf5"
        db_utm, q_utm, features = make_cache(args.database, args.queries, args.dim, cache, rng)
        train = GroundTruth.from_utm(db_utm, q_utm, 10.0)
        near = GroundTruth.from_utm(db_utm, q_utm, 25.0)
        nontrivial = [train.positives(i) for i in range(args.queries)]
        everything = np.arange(args.database)
        potential_neg = [np.setdiff1d(everything, near.positives(i)) for i in range(args.queries)]
        neg_cache = [np.empty(0, dtype=np.int64) for _ in range(args.queries)]
        items = [i for i in range(args.queries) if len(nontrivial[i])][: args.per_item]

        started = time.perf_counter()
        for i in items:
            original_per_item(cache, args.database, nontrivial, potential_neg, neg_cache, i, rng)
        per_item_ms = 1000 * (time.perf_counter() - started) / len(items)

        miner = HardNegativeMiner(train, near, NEG, SAMPLES, MARGIN**0.5)
        q_desc, db_desc = features[args.database :], features[: args.database]
        miner.mine(q_desc, db_desc, np.random.default_rng(1))  # warm-up (BLAS threads, page cache)
        started = time.perf_counter()
        mined = miner.mine(q_desc, db_desc, np.random.default_rng(2))
        batched_ms = 1000 * (time.perf_counter() - started) / args.queries

    print(
        f"cache: {args.database} database + {args.queries} queries, {args.dim}-d, "
        f"{NEG} negatives of {SAMPLES} samples"
    )
    print(f"per-item HDF5 + sklearn (original): {per_item_ms:8.3f} ms/query  ({len(items)} queries timed)")
    print(
        f"batched GEMM (vpr-bench):           {batched_ms:8.3f} ms/query  ({args.queries} queries, "
        f"{len(mined.queries)} tuples)"
    )
    print(f"speed-up: {per_item_ms / batched_ms:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
