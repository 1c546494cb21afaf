"""Exact L2 nearest neighbours as blocked matrix products on torch: the speed of the machine's GEMM.

Why not faiss's ``IndexFlatL2``: its arithmetic runs on the OpenBLAS bundled in the faiss-cpu wheel,
which picks its kernel from the CPU it recognises. On CPUs it does not recognise (this project's
"Intel(R) Xeon(R) Processor" with AVX-512, for one) it falls back to a generic kernel 4–6× slower than
the machine's GEMM; the cure, ``OPENBLAS_CORETYPE``, must be set before the library loads and is wrong
to force on other CPUs. torch's matrix product (MKL/oneDNN on x86, its own kernels elsewhere, cuBLAS
on a GPU) reaches the machine's limit wherever torch runs, so the exact search is written on it:

    ‖q − d‖² = ‖q‖² + ‖d‖² − 2 q·d      (float32 products and accumulation, as faiss computes it)

over database blocks × query blocks, each block's ``topk`` merged into a running top-k per query. Results
are faiss flat's: squared L2 distances, ascending; ties ordered by database index (faiss leaves the order
of exact ties open, so neighbours agree up to exact ties). ``benchmarks/matching.py`` prints the ratio
to the bare GEMM + top-k limit, ``benchmarks/scale.py`` the same for a 1 M-row memory-mapped database.

The database is visited once per search, a block at a time, each block against every query: a host
database goes to a GPU once; a tensor already on the device (descriptors extracted there) is not copied;
a memory-mapped file larger than ``STREAM_BYTES`` is read block by block into one reused buffer, so the
peak memory is bounded by the block size, not by the database (slicing the mapping would leave every page
it touched resident).
"""

from __future__ import annotations

import mmap
import os
import warnings
from collections.abc import Iterator

import numpy as np
import torch

BLOCK_ELEMENTS = 1 << 23  # query rows × database rows per distance block (32 MB of float32)
CUDA_BLOCK_ELEMENTS = 1 << 26  # on a GPU: fewer, larger blocks (256 MB), fewer kernel launches
DATABASE_BLOCK_ELEMENTS = 1 << 24  # database rows × dimensions per block, at most (64 MB of float32)
QUERY_BLOCK = 4096
QUERY_PASS_ELEMENTS = 1 << 26  # queries held as float32 during one pass over the database (256 MB)
STREAM_BYTES = 1 << 28  # a memory-mapped database larger than this is read block by block (256 MB)

Array = np.ndarray | torch.Tensor


def float32_tensor(block: Array, device: torch.device | str) -> torch.Tensor:
    """A float32 tensor on ``device``; zero-copy for a contiguous float32 array on the CPU. A float16
    array travels to the device as float16 and is converted there."""
    return _tensor(block).to(device).to(torch.float32)


def _tensor(block: Array) -> torch.Tensor:
    """``block`` as a tensor, where it is: zero-copy for a contiguous float16 or float32 array."""
    if isinstance(block, torch.Tensor):
        return block
    if block.dtype not in (np.float16, np.float32) or not block.flags.c_contiguous:
        block = np.ascontiguousarray(block, dtype=np.float32)  # strided / other types: one block
    with warnings.catch_warnings():  # a read-only (memory-mapped) array: only ever read here
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(block)


def squared_distances(
    queries: Array, database: Array, device: torch.device | str | None = None
) -> np.ndarray:
    """(Q, N) squared L2 distances, float32, ≥ 0: one GEMM (what faiss.pairwise_distances computes), on
    ``device`` (None → the database's if it is a tensor, else the CPU); a database tensor already there
    (e.g. a miner's, uploaded once per round) is not copied."""
    if device is None:
        device = database.device if isinstance(database, torch.Tensor) else "cpu"
    with torch.inference_mode():
        q, d = float32_tensor(queries, device), float32_tensor(database, device)
        d_norm = torch.linalg.vector_norm(d, dim=1).square()  # no (N, D) temporary, unlike (d * d)
        dist = torch.addmm(d_norm.unsqueeze(0), q, d.T, beta=1.0, alpha=-2.0)
        dist = dist.add_(torch.linalg.vector_norm(q, dim=1, keepdim=True).square()).clamp_(min=0.0)
        return dist.cpu().numpy()


def database_block(
    n_queries: int, k: int, dim: int, query_block: int = QUERY_BLOCK, block_elements: int = BLOCK_ELEMENTS
) -> int:
    """Database rows per block: (query block × these rows) ≤ ``block_elements`` and (these rows × ``dim``)
    ≤ ``DATABASE_BLOCK_ELEMENTS`` (few queries must not make the blocks large), and at least ``k``."""
    by_queries = block_elements // max(1, min(query_block, n_queries))
    return max(k, min(by_queries, DATABASE_BLOCK_ELEMENTS // max(1, dim)))


def file_region(array: np.ndarray) -> tuple[str, int] | None:
    """(file, byte offset of the first element) of a C-contiguous memory-mapped array, or of a view of
    one, whose contents are the file's (not a copy-on-write mapping); None for any other array."""
    mapping = getattr(array, "_mmap", None)  # np.memmap's mapping, shared by its views
    if not isinstance(array, np.memmap) or mapping is None or array.filename is None:
        return None
    if array.mode == "c" or not array.flags.c_contiguous:
        return None
    # np.memmap maps the file from the allocation-granularity boundary below its offset
    mapping_start = array.offset - array.offset % mmap.ALLOCATIONGRANULARITY
    mapping_address = np.frombuffer(mapping, dtype=np.uint8).ctypes.data
    return os.fspath(array.filename), mapping_start + array.ctypes.data - mapping_address


def database_blocks(
    database: Array, rows: int, device: torch.device, stream_above: int = STREAM_BYTES
) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, (≤ rows, D) float32 tensor on ``device``) for each block of the database, in order;
    a block is valid until the next one is drawn. On the CPU a float16 block is converted into one
    reused buffer (a fresh one per block would cost its page faults each time)."""
    region = None
    if isinstance(database, np.ndarray) and database.nbytes > stream_above:
        region = file_region(database)
    if region is not None:
        blocks = _read_blocks(database, *region, rows)
    else:
        blocks = ((start, database[start : start + rows]) for start in range(0, len(database), rows))
    converted = None
    for start, block in blocks:
        block = _tensor(block).to(device)  # a GPU copy completes before the next block is read
        if block.dtype == torch.float32 or device.type != "cpu":
            yield start, block.to(torch.float32)
            continue
        if converted is None:
            converted = torch.empty(block.shape, dtype=torch.float32)  # the first block is the largest
        yield start, converted[: len(block)].copy_(block)


def _read_blocks(database: np.ndarray, path: str, offset: int, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """The blocks read from the file into one reused buffer: what is read is not mapped into this
    process (the pages stay in the page cache, not in its resident set)."""
    n_db = len(database)
    buffer = np.empty((min(rows, n_db), *database.shape[1:]), dtype=database.dtype)
    row_bytes = buffer.strides[0]
    with open(path, "rb", buffering=0) as file:
        for start in range(0, n_db, rows):
            block = buffer[: min(rows, n_db - start)]
            file.seek(offset + start * row_bytes)
            view, filled = memoryview(block).cast("B"), 0
            while filled < block.nbytes:
                read = file.readinto(view[filled:])
                if not read:
                    raise OSError(f"{path}: ends before the {n_db} rows its array holds")
                filled += read
            yield start, block


def exact_search(
    database: Array,
    queries: Array,
    k: int,
    device: torch.device | str | None = None,
    query_block: int = QUERY_BLOCK,
    block_elements: int | None = None,
    round_float16: bool = False,
    stream_above: int = STREAM_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest database rows of each query by L2: (Q, k') squared distances (float32) and
    (Q, k') indices (int64), k' = min(k, database size), ascending, ties by lower index.

    ``database``: a numpy array (float16 or float32, in memory or memory-mapped: converted a block at a
    time) or a tensor; ``device`` runs the products there (None → the database tensor's device, else the
    CPU). ``round_float16``: search the database rounded to float16 (``flat-fp16``; a float16 database
    is already). ``block_elements``: query rows × database rows per distance block (None → ``BLOCK_ELEMENTS``,
    on CUDA ``CUDA_BLOCK_ELEMENTS``); ``stream_above``: bytes above which a memory-mapped database is
    read block by block into one buffer."""
    if device is None:
        device = database.device if isinstance(database, torch.Tensor) else "cpu"
    device = torch.device(device)
    if block_elements is None:
        block_elements = CUDA_BLOCK_ELEMENTS if device.type == "cuda" else BLOCK_ELEMENTS
    n_db, n_q = len(database), len(queries)
    k = min(k, n_db)
    out_d = np.empty((n_q, k), dtype=np.float32)
    out_i = np.empty((n_q, k), dtype=np.int64)
    if n_q == 0 or k == 0:
        return out_d, out_i
    query_block = max(1, min(query_block, n_q))
    rows = database_block(n_q, k, queries.shape[1], query_block, block_elements)
    per_pass = max(1, QUERY_PASS_ELEMENTS // (query_block * queries.shape[1])) * query_block
    round_float16 = round_float16 and str(database.dtype) not in ("float16", "torch.float16")
    with torch.inference_mode():
        for first in range(0, n_q, per_pass):  # one pass over the database for these queries
            last = min(first + per_pass, n_q)
            blocks = database_blocks(database, rows, device, stream_above)
            out_d[first:last], out_i[first:last] = _search_pass(
                blocks, queries[first:last], k, query_block, device, round_float16
            )
    return out_d, out_i


def _search_pass(
    blocks: Iterator[tuple[int, torch.Tensor]],
    queries: Array,
    k: int,
    query_block: int,
    device: torch.device,
    round_float16: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of ``queries`` (held on ``device`` as float32) in one pass over the database's
    ``blocks``."""
    query_blocks = [
        float32_tensor(queries[start : start + query_block], device)  # (≤ query_block, D)
        for start in range(0, len(queries), query_block)
    ]
    best: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(query_blocks)
    scratch = None  # the distance blocks' memory, reused (on the CPU a fresh one costs page faults)
    for start, d in blocks:
        if round_float16:
            d = d.to(torch.float16).to(torch.float32)
        d_norm = torch.linalg.vector_norm(d, dim=1).square().unsqueeze(0)  # (1, rows)
        take = min(k, len(d))
        if scratch is None:
            scratch = torch.empty(len(query_blocks[0]) * len(d), device=device)
        for j, q in enumerate(query_blocks):
            # ‖d‖² − 2 q·d in one GEMM with the row of norms as its bias; ‖q‖² (the same along a
            # row, so the ranking does not need it) is added to the k kept values only
            dist = scratch[: len(q) * len(d)].view(len(q), len(d))  # (query block, database block)
            torch.addmm(d_norm, q, d.T, beta=1.0, alpha=-2.0, out=dist)
            values, index = torch.topk(dist, take, dim=1, largest=False, sorted=False)
            best[j] = _merge(best[j], values, index + start, k)
    ranked = [_ranked(*kept, q) for kept, q in zip(best, query_blocks, strict=True)]
    return (
        np.concatenate([d.cpu().numpy() for d, _ in ranked]),
        np.concatenate([i.cpu().numpy() for _, i in ranked]),
    )


def _merge(best, values: torch.Tensor, index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` smallest of the running top-k ``best`` (None: none yet) and a block's candidates."""
    if best is None:
        return values, index
    merged_d, merged_i = torch.cat([best[0], values], dim=1), torch.cat([best[1], index], dim=1)
    kept_d, pick = torch.topk(merged_d, k, dim=1, largest=False, sorted=False)
    return kept_d, torch.gather(merged_i, 1, pick)


def _ranked(best_d: torch.Tensor, best_i: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances ascending, ties by index: sort by index, then a stable sort by distance."""
    best_i, by_index = torch.sort(best_i, dim=1)
    best_d = torch.gather(best_d, 1, by_index)
    best_d = (best_d + torch.linalg.vector_norm(q, dim=1, keepdim=True).square()).clamp_(min=0.0)
    best_d, by_distance = torch.sort(best_d, dim=1, stable=True)
    return best_d, torch.gather(best_i, 1, by_distance)
