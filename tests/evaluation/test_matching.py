"""faiss search: exact flat and approximate IVF-PQ indexes."""

import numpy as np
import pytest

from vpr_bench.errors import ConfigError
from vpr_bench.evaluation.matching import IndexSpec, search


def clustered(n, dim=64, centres=50, seed=0):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(centres, dim))[rng.integers(0, centres, n)] + 0.1 * rng.normal(size=(n, dim))
    return points.astype(np.float32)


def test_ivfpq_finds_mostly_the_exact_neighbours():
    database, queries = clustered(4000), clustered(200, seed=1)
    _, exact, _ = search(database, queries, 10)
    spec = IndexSpec("ivfpq", nlist=16, m=16, nprobe=8)
    _, approx, ms = search(database, queries, 10, spec)
    hit = np.mean([exact[i, 0] in approx[i] for i in range(len(queries))])
    assert hit > 0.75 and ms > 0  # the exact nearest is in the approximate top-10 (measured 0.85)
    assert spec.describe() == "ivfpq(nlist=16, m=16, nbits=8, nprobe=8)"


def test_ivfpq_bad_settings_fail_clearly():
    database = clustered(1000)
    with pytest.raises(ConfigError, match="--m 7 must divide the descriptor size 64"):
        search(database, database[:5], 5, IndexSpec("ivfpq", nlist=4, m=7))
    with pytest.raises(ConfigError, match="--nlist 1024 needs ≥ 39936 database images"):
        search(database, database[:5], 5, IndexSpec("ivfpq", nlist=1024, m=8))


def test_float16_flat_index_keeps_the_exact_neighbours():
    database, queries = clustered(3000), clustered(100, seed=2)
    _, exact, _ = search(database, queries, 5)
    _, half, _ = search(database.astype(np.float16), queries, 5, IndexSpec("flat", fp16=True))
    assert np.mean(half[:, 0] == exact[:, 0]) > 0.97
    assert IndexSpec("flat", fp16=True).describe() == "flat-fp16"
