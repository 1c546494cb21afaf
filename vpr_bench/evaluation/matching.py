"""Nearest-neighbour search with faiss, in query blocks."""

from __future__ import annotations

import time

import faiss
import numpy as np

DB_BLOCK = 65536
QUERY_BLOCK = 4096


def search(database: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Exact L2 search: (Q, k) distances, (Q, k) indices, and milliseconds per query (batched search)."""
    index = faiss.IndexFlatL2(database.shape[1])
    for start in range(0, len(database), DB_BLOCK):  # the database may be a memory-mapped file
        index.add(np.ascontiguousarray(database[start : start + DB_BLOCK], dtype=np.float32))
    k = min(k, index.ntotal)
    distances = np.empty((len(queries), k), dtype=np.float32)
    indices = np.empty((len(queries), k), dtype=np.int64)
    started = time.perf_counter()
    for start in range(0, len(queries), QUERY_BLOCK):
        block = np.ascontiguousarray(queries[start : start + QUERY_BLOCK], dtype=np.float32)
        distances[start : start + len(block)], indices[start : start + len(block)] = index.search(block, k)
    ms_per_query = 1000.0 * (time.perf_counter() - started) / max(1, len(queries))
    return distances, indices, ms_per_query
