"""Exact L2 nearest neighbours as blocked matrix products on torch: the speed of the machine's GEMM.

Why not faiss's ``IndexFlatL2``: its arithmetic runs on the OpenBLAS bundled in the faiss-cpu wheel,
which picks its kernel from the CPU it recognises. On CPUs it does not recognise (this project's
"Intel(R) Xeon(R) Processor" with AVX-512, for one) it falls back to a generic kernel 4–6× slower than
the machine's GEMM; the cure, ``OPENBLAS_CORETYPE``, must be set before the library loads and is wrong
to force on other CPUs. torch's matrix product (MKL/oneDNN on x86, its own kernels elsewhere, cuBLAS
on a GPU) reaches the machine's limit wherever torch runs, so the exact search is written on it:

    ‖q − d‖² = ‖q‖² + ‖d‖² − 2 q·d      (float32 products and accumulation, as faiss computes it)

over query blocks × database blocks, each block's ``topk`` merged into a running top-k. Results are
faiss flat's: squared L2 distances, ascending; ties ordered by database index (faiss leaves the order
of exact ties open, so neighbours agree up to exact ties). ``benchmarks/matching.py`` prints the ratio
to the bare GEMM + top-k limit.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

BLOCK_ELEMENTS = 1 << 23  # query rows × database rows per distance block (32 MB of float32)
QUERY_BLOCK = 4096


def _as_float32(block: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A float32 tensor on ``device``; zero-copy for a contiguous float32 array on the CPU."""
    if isinstance(block, torch.Tensor):
        return block.to(device=device, dtype=torch.float32)
    if block.dtype != np.float32 or not block.flags.c_contiguous:
        block = np.ascontiguousarray(block, dtype=np.float32)  # float16 / strided: one block
    with warnings.catch_warnings():  # a read-only (memory-mapped) array: only ever read here
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(block).to(device)


def squared_distances(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """(Q, N) squared L2 distances, float32, ≥ 0: one GEMM (what faiss.pairwise_distances computes)."""
    with torch.inference_mode():
        q, d = _as_float32(queries, torch.device("cpu")), _as_float32(database, torch.device("cpu"))
        d_norm = torch.linalg.vector_norm(d, dim=1).square()  # no (N, D) temporary, unlike (d * d)
        dist = torch.addmm(d_norm.unsqueeze(0), q, d.T, beta=1.0, alpha=-2.0)
        return dist.add_(torch.linalg.vector_norm(q, dim=1, keepdim=True).square()).clamp_(min=0.0).numpy()


def exact_search(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    device: torch.device | str | None = None,
    query_block: int = QUERY_BLOCK,
    block_elements: int = BLOCK_ELEMENTS,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest database rows of each query by L2: (Q, k') squared distances (float32) and
    (Q, k') indices (int64), k' = min(k, database size), ascending, ties by lower index.

    ``database`` may be float16 or memory-mapped (converted a block at a time); ``device`` runs the
    products there (e.g. the model's GPU); None → CPU."""
    device = torch.device(device or "cpu")
    n_db, n_q = len(database), len(queries)
    k = min(k, n_db)
    out_d = np.empty((n_q, k), dtype=np.float32)
    out_i = np.empty((n_q, k), dtype=np.int64)
    if n_q == 0 or k == 0:
        return out_d, out_i
    query_block = max(1, min(query_block, n_q))
    db_block = max(k, block_elements // query_block)
    # converted blocks are kept for the next query block: free for a float32 array on the CPU (views),
    # on a GPU the database is uploaded once; a float16/strided array is kept while its copy is ≤ 1 GB
    zero_copy = device.type == "cpu" and database.dtype == np.float32 and database.flags.c_contiguous
    keep = zero_copy or device.type != "cpu" or n_db * database.shape[1] <= 1 << 28
    blocks: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * -(-n_db // db_block)
    with torch.inference_mode():
        for q_start in range(0, n_q, query_block):
            q = _as_float32(queries[q_start : q_start + query_block], device)
            q_norm = torch.linalg.vector_norm(q, dim=1, keepdim=True).square()
            best_d = best_i = None
            for b, start in enumerate(range(0, n_db, db_block)):
                held = blocks[b]
                if held is None:
                    d = _as_float32(database[start : start + db_block], device)
                    held = (d, torch.linalg.vector_norm(d, dim=1).square())
                    if keep:
                        blocks[b] = held
                d, d_norm = held
                # ‖d‖² − 2 q·d in one GEMM with the row of norms as its bias; ‖q‖² (the same along a
                # row, so the ranking does not need it) is added to the k kept values only
                dist = torch.addmm(d_norm.unsqueeze(0), q, d.T, beta=1.0, alpha=-2.0)
                take = min(k, len(d))
                v, i = torch.topk(dist, take, dim=1, largest=False, sorted=False)
                i += start
                if best_d is None:
                    best_d, best_i = v, i
                else:
                    merged_d, merged_i = torch.cat([best_d, v], dim=1), torch.cat([best_i, i], dim=1)
                    best_d, pick = torch.topk(merged_d, k, dim=1, largest=False, sorted=False)
                    best_i = torch.gather(merged_i, 1, pick)
            # ascending by distance, ties by index: sort by index, then a stable sort by distance
            best_i, by_index = torch.sort(best_i, dim=1)
            best_d = torch.gather(best_d, 1, by_index)
            best_d = (best_d + q_norm).clamp_(min=0.0)
            best_d, by_distance = torch.sort(best_d, dim=1, stable=True)
            best_i = torch.gather(best_i, 1, by_distance)
            out_d[q_start : q_start + len(q)] = best_d.cpu().numpy()
            out_i[q_start : q_start + len(q)] = best_i.cpu().numpy()
    return out_d, out_i
