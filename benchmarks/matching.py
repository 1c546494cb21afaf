"""Matching cost: exact search vs the machine's GEMM limit, faiss flat, and IVF-PQ, at 10k and 100k × 2048.

Descriptors are random but clustered like place descriptors (each query is a noisy copy of one database
descriptor, its "place"), L2-normalised. Printed, per database size, all measured in this run with the
same data and threads (best of ``--repeats``):
- the GEMM limit: blocked ``queries @ database.T`` + ``topk`` on float32 torch tensors already in memory
  (what no exact search can beat by much on this machine);
- vpr-bench's exact search (``--index flat``) and its ratio to the limit (target ≥ 0.8); on a GPU both on
  host arrays (the database uploaded once per search) and on tensors resident on the GPU (the engine's
  path when it extracted the descriptors there: nothing uploaded), the latter against the same limit;
- faiss ``IndexFlatL2`` (what the flat index used to be) and its ratio to the limit, with the share of
  top-k neighbours the two exact searches agree on;
- IVF-PQ (approximate): build time, ms/query, and how often it returns the exact nearest neighbour.

    python benchmarks/matching.py [--sizes 10000,100000] [--queries 1000] [--dim 2048] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import faiss
import numpy as np
import torch

from vpr_bench.evaluation.exact import exact_search
from vpr_bench.evaluation.matching import IndexSpec, build_index

K = 20  # the engine's deepest rank (R@20)


def descriptors(n_db: int, n_q: int, dim: int, rng: np.random.Generator):
    database = rng.normal(size=(n_db, dim)).astype(np.float32)
    database /= np.linalg.norm(database, axis=1, keepdims=True)
    places = rng.integers(0, n_db, n_q)
    queries = database[places] + rng.normal(scale=0.03, size=(n_q, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return database, queries


def gemm_limit(database: torch.Tensor, queries: torch.Tensor, block: int = 4096) -> None:
    """The bare work of an exact search: inner products + top-k, on tensors already on the device."""
    with torch.inference_mode():
        for start in range(0, len(database), block):
            torch.topk(queries @ database[start : start + block].T, K, dim=1)
        if queries.is_cuda:
            torch.cuda.synchronize()


def upload_and_gemm_limit(database: np.ndarray, queries: np.ndarray, device: torch.device) -> None:
    """On a GPU: the limit for descriptors that live on the host (the engine's): upload, then GEMM."""
    gemm_limit(torch.from_numpy(database).to(device), torch.from_numpy(queries).to(device))


def faiss_flat(database: np.ndarray, queries: np.ndarray):
    index = faiss.IndexFlatL2(database.shape[1])
    index.add(database)
    return index.search(queries, K)


def best_ms(fn, args: tuple, repeats: int, queries: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - started)
    return 1000 * min(times) / queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nlist", type=int, default=256)
    parser.add_argument("--m", type=int, default=64)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cuda: the exact search and its limit on the GPU")
    args = parser.parse_args()
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{where}: torch {torch.__version__} ({torch.get_num_threads()} threads), faiss {faiss.__version__} "
        f"({faiss.omp_get_max_threads()} threads), OPENBLAS_CORETYPE="
        f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; {args.dim}-d, {args.queries} queries, "
        f"top-{K}, best of {args.repeats}"
    )
    print(f"{'database':>9}  {'search':<44} {'build s':>8} {'ms/query':>9}  vs GEMM limit / agreement")
    for size in (int(s) for s in args.sizes.split(",")):
        database, queries = descriptors(size, args.queries, args.dim, rng)
        n, r = len(queries), args.repeats
        on_device = torch.from_numpy(database).to(device), torch.from_numpy(queries).to(device)
        limit_ms = best_ms(gemm_limit, on_device, r, n)
        # the search takes host arrays (the engine's descriptors) and uploads the database itself
        exact_ms = best_ms(exact_search, (database, queries, K, device), r, n)
        faiss_ms = best_ms(faiss_flat, (database, queries), 1 if size > 20000 else r, n)
        _, exact_idx = exact_search(database, queries, K, device)
        _, faiss_idx = faiss_flat(database, queries)
        same = 100 * np.mean(exact_idx == faiss_idx)
        print(
            f"{size:>9}  {f'GEMM limit (q @ db.T + topk, {device.type})':<44} {'-':>8} {limit_ms:>9.3f}  1.00"
        )
        if device.type == "cuda":  # from host arrays the upload is part of the limit
            upload_ms = best_ms(upload_and_gemm_limit, (database, queries, device), r, n)
            label = "limit with the host->GPU upload"
            print(f"{size:>9}  {label:<44} {'-':>8} {upload_ms:>9.3f}  ours: {upload_ms / exact_ms:.2f}")
            resident_ms = best_ms(exact_search, (*on_device, K), r, n)  # runs on the tensors' device
            label = "flat: exact search, resident GPU tensors"
            print(
                f"{size:>9}  {label:<44} {'-':>8} {resident_ms:>9.3f}  "
                f"{limit_ms / resident_ms:.2f} (target >= 0.8)"
            )
        where = "host arrays" if device.type == "cuda" else device.type
        print(
            f"{size:>9}  {f'flat: vpr-bench exact search ({where})':<44} {'-':>8} {exact_ms:>9.3f}  "
            f"{limit_ms / exact_ms:.2f}{'' if device.type == 'cuda' else ' (target >= 0.8)'}"
        )
        print(
            f"{size:>9}  {'faiss IndexFlatL2 (cpu)':<44} {'-':>8} {faiss_ms:>9.3f}  "
            f"{limit_ms / faiss_ms:.2f}; same top-{K} as ours: {same:.2f} %"
        )
        spec = IndexSpec("ivfpq", nlist=args.nlist, m=args.m, nprobe=args.nprobe)
        started = time.perf_counter()
        index = build_index(database, spec)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        _, approx = index.search(queries, 10)
        ivf_ms = 1000 * (time.perf_counter() - started) / n
        top1 = 100 * np.mean(approx[:, 0] == exact_idx[:, 0])
        top10 = 100 * np.mean([exact_idx[i, 0] in approx[i] for i in range(n)])
        print(
            f"{size:>9}  {spec.describe():<44} {build_s:>8.1f} {ivf_ms:>9.3f}  "
            f"top-1 exact {top1:.1f} %, exact in top-10 {top10:.1f} %"
        )


if __name__ == "__main__":
    main()
