"""Nearest-neighbour search: exact (``flat``: blocked GEMM on torch, see ``exact.py``) or approximate
(``ivfpq``: faiss), in query blocks. ``flat-fp16`` is the exact search over the database stored as float16."""

from __future__ import annotations

import time
from dataclasses import dataclass

import faiss
import numpy as np
import torch

from vpr_bench.config import EvalConfig
from vpr_bench.errors import ConfigError
from vpr_bench.evaluation.exact import exact_search

DB_BLOCK = 8192  # rows added to the index at a time (IVF-PQ encodes a block in one go)
QUERY_BLOCK = 4096


@dataclass(frozen=True)
class IndexSpec:
    """``flat``: exact L2 (``fp16``: of the database rounded to float16, ``flat-fp16``). ``ivfpq``:
    inverted file with ``nlist`` cells, product quantiser of ``m`` sub-vectors × 8 bits, ``nprobe`` cells
    visited per query — less memory and time, approximate."""

    kind: str = "flat"
    nlist: int = 1024
    m: int = 64
    nprobe: int = 16
    train_size: int | None = None  # sample to train the quantisers; None → 40 per cell (≥ 10k)
    fp16: bool = False  # flat: store the database as float16 (faiss scalar quantiser), half the memory

    def describe(self) -> str:
        if self.kind == "flat":
            return "flat-fp16" if self.fp16 else "flat"
        return f"ivfpq(nlist={self.nlist}, m={self.m}, nbits=8, nprobe={self.nprobe})"


def index_spec(settings: EvalConfig) -> IndexSpec:
    """The index an ``EvalConfig`` asks for (``--index``, ``--nlist``, ``--m``, ``--nprobe``): ``flat-fp16``
    is the flat index over float16; so is ``flat`` over float16 descriptors (``--descriptor-dtype
    float16``: searched as the float16 they are)."""
    kind = "flat" if settings.index == "flat-fp16" else settings.index
    fp16 = kind == "flat" and database_dtype(settings) == np.float16
    return IndexSpec(kind, settings.nlist, settings.m, settings.nprobe, fp16=fp16)


def database_dtype(settings: EvalConfig) -> np.dtype:
    """The dtype the database descriptors are stored in: float16 for ``--index flat-fp16``, else
    ``--descriptor-dtype``'s."""
    return np.dtype("float16" if settings.index == "flat-fp16" else settings.descriptor_dtype)


@dataclass(frozen=True)
class Predictions:
    """The ranked database images of each evaluated query, best first (``predictions.npz``)."""

    query_index: np.ndarray  # (Q,) rows of the split's queries that were evaluated
    indices: np.ndarray  # (Q, K) database rows; -1: no result
    distances: np.ndarray  # (Q, K) squared L2 distances
    ms_per_query: float  # the batched search's wall time per query (index building not included)


def build_index(database: np.ndarray, spec: IndexSpec = IndexSpec(), seed: int = 0) -> faiss.Index:
    dim = database.shape[1]
    if spec.kind == "flat" and spec.fp16:
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
        index.train(np.ascontiguousarray(database[: min(len(database), 1000)], dtype=np.float32))
    elif spec.kind == "flat":
        index = faiss.IndexFlatL2(dim)
    elif spec.kind == "ivfpq":
        if dim % spec.m:
            raise ConfigError(f"--m {spec.m} must divide the descriptor size {dim}")
        needed = 39 * spec.nlist  # faiss warns below 39 training points per cell
        if len(database) < max(needed, 256):
            raise ConfigError(
                f"--index ivfpq with --nlist {spec.nlist} needs ≥ {max(needed, 256)} database images to "
                f"train, this split has {len(database)}: lower --nlist or use --index flat"
            )
        index = faiss.IndexIVFPQ(faiss.IndexFlatL2(dim), dim, spec.nlist, spec.m, 8)
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        size = min(len(database), spec.train_size or max(40 * spec.nlist, 10_000))
        picks = np.sort(rng.choice(len(database), size=size, replace=False))
        index.train(np.ascontiguousarray(database[picks], dtype=np.float32))
        index.nprobe = spec.nprobe
    else:
        raise ConfigError(f"--index {spec.kind!r} is not one of flat, ivfpq")
    for start in range(0, len(database), DB_BLOCK):  # the database may be a memory-mapped file
        index.add(np.ascontiguousarray(database[start : start + DB_BLOCK], dtype=np.float32))
    return index


def search(
    database: np.ndarray | torch.Tensor,
    queries: np.ndarray,
    k: int,
    spec: IndexSpec = IndexSpec(),
    device=None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """L2 search (exact, or ``spec``'s approximate index): (Q, k') squared distances, (Q, k') indices,
    and milliseconds per query of the batched search (index building not included).

    k' = min(k, database size): faiss would fill the ranks past the database with index -1 and distance
    3.4e38. An approximate index may still leave a rank empty (its probed cells hold fewer than k'
    images): index -1, distance inf. The exact search gives faiss flat's neighbours and distances
    (``flat-fp16``: of the database rounded to float16, as faiss's fp16 scalar quantiser decodes it)
    at the machine's GEMM speed, on ``device`` (a torch device; None → the database tensor's, else the
    CPU), in one pass over the database: a memory-mapped file read block by block, a tensor already on
    the device not copied (``exact.py``); IVF-PQ runs on faiss."""
    if spec.kind == "flat":
        started = time.perf_counter()
        distances, indices = exact_search(database, queries, k, device=device, round_float16=spec.fp16)
        ms_per_query = 1000.0 * (time.perf_counter() - started) / max(1, len(queries))
        return distances, indices, ms_per_query
    if isinstance(database, torch.Tensor):  # faiss reads host arrays
        database = database.cpu().numpy()
    index = build_index(database, spec)
    k = min(k, index.ntotal)
    distances = np.empty((len(queries), k), dtype=np.float32)
    indices = np.empty((len(queries), k), dtype=np.int64)
    started = time.perf_counter()
    for start in range(0, len(queries), QUERY_BLOCK):
        block = np.ascontiguousarray(queries[start : start + QUERY_BLOCK], dtype=np.float32)
        distances[start : start + len(block)], indices[start : start + len(block)] = index.search(block, k)
    ms_per_query = 1000.0 * (time.perf_counter() - started) / max(1, len(queries))
    distances[indices < 0] = np.inf  # not faiss's float32 max, which overflows when saved as float16
    return distances, indices, ms_per_query


def collapse_groups(distances: np.ndarray, indices: np.ndarray, groups: np.ndarray, k: int) -> tuple:
    """Keep the first (best-ranked) database image of each group per row, then the top ``k``.

    NetVLAD's ``nnSearchPostprocess`` for Tokyo 24/7: the 12 cut-outs of one panorama count once.
    Rows with fewer than ``k`` distinct groups are padded with index -1 (a miss). Vectorised over rows.
    """
    valid = indices >= 0
    group = np.where(valid, groups[np.where(valid, indices, 0)], -1)  # (Q, K')
    order = np.argsort(group, axis=1, kind="stable")
    sorted_group = np.take_along_axis(group, order, axis=1)
    first = np.ones_like(sorted_group, dtype=bool)
    first[:, 1:] = sorted_group[:, 1:] != sorted_group[:, :-1]
    keep = np.zeros_like(first)
    np.put_along_axis(keep, order, first, axis=1)
    keep &= valid
    compact = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept positions first, in rank order
    kept = np.take_along_axis(keep, compact, axis=1)
    out_idx = np.where(kept, np.take_along_axis(indices, compact, axis=1), -1)
    out_dist = np.where(kept, np.take_along_axis(distances, compact, axis=1), np.inf).astype(np.float32)
    return out_dist, out_idx
