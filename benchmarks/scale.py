"""Exact search at SF-XL scale, from a memory-mapped float16 file: ms/query, peak RSS, GEMM-limit ratio.

SF-XL's test database holds 2.8 M images (Berton et al., CVPR 2022). This writes a synthetic database
(default 1 M × 512 float16, 1 GB: random L2-normalised rows) to a temporary .npy file in chunks, opens it
with ``np.load(mmap_mode="r")`` and runs vpr-bench's exact search on it (``matching.search``, ``--index
flat``: the file is read block by block into one buffer) with ``--queries`` queries, noisy copies of
database rows, top-20. Printed, all measured in this one run with the same threads (best of
``--repeats``):
- the GEMM limit on the same blocks: for each database block of the search's size, ``q @ block.T`` +
  ``topk``, on one block held as float32 on the device (the arithmetic alone: no file read, no float16
  conversion, no norms or merging);
- the search: ms/query, its ratio to the limit (target >= 0.8), this process's peak RSS (VmHWM, the
  whole run: the file written, then searched; target <= 1.5 GB) and how often the top-1 is the query's
  source row;
- with ``--device cuda``: the same streamed from the file to the GPU, and the database resident on the
  GPU as a float16 tensor (what the engine searches when it extracted the descriptors there) against the
  limit on the GPU;
- from the measured rates, what 2.8 M × 512 and 2.8 M × 2048 would take: time grows with rows × dim at
  a fixed query count; the memory is the measured peak with the blocks' buffers at that size.

    python benchmarks/scale.py [--rows 1000000] [--dim 512] [--queries 1000] [--repeats 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vpr_bench.evaluation.exact import (
    BLOCK_ELEMENTS,
    CUDA_BLOCK_ELEMENTS,
    QUERY_BLOCK,
    STREAM_BYTES,
    database_block,
)
from vpr_bench.evaluation.matching import search

K = 20
SFXL_ROWS = 2_800_000
CHUNK = 1 << 15  # rows written (and uploaded) at a time


def write_database(path: Path, rows: int, dim: int, sources: np.ndarray, seed: int = 0) -> np.ndarray:
    """A (rows, dim) float16 .npy file of random L2-normalised rows, written a chunk at a time (never
    held whole); returns the rows ``sources`` (sorted) as float32."""
    rng = np.random.default_rng(seed)
    picked = []
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(
            file, {"descr": "<f2", "fortran_order": False, "shape": (rows, dim)}
        )
        for start in range(0, rows, CHUNK):
            chunk = rng.standard_normal((min(CHUNK, rows - start), dim), dtype=np.float32)
            chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
            chunk = chunk.astype(np.float16)
            inside = sources[(sources >= start) & (sources < start + len(chunk))]
            picked.append(chunk[inside - start].astype(np.float32))
            file.write(chunk.tobytes())
    return np.concatenate(picked)


def gemm_limit(queries: torch.Tensor, block: torch.Tensor, block_rows: list[int], query_block: int) -> None:
    """The bare work of the search's blocks: for each block size, ``q @ block.T`` + ``topk`` of every
    query block, into one reused output, on one float32 block already on the device."""
    scratch = torch.empty(min(query_block, len(queries)) * len(block), device=block.device)
    with torch.inference_mode():
        for rows in block_rows:
            d = block[:rows]
            for start in range(0, len(queries), query_block):
                q = queries[start : start + query_block]
                out = scratch[: len(q) * rows].view(len(q), rows)
                torch.topk(torch.mm(q, d.T, out=out), K, dim=1)
        if block.is_cuda:
            torch.cuda.synchronize(block.device)


def peak_rss_mb() -> float:
    """This process's peak resident set: VmHWM on Linux (ru_maxrss would start from the peak of the
    process that started this one), ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_s(fn, *args, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - started)
    return min(times)


def blocks_of(rows: int, dim: int, queries: int, device: torch.device) -> list[int]:
    """The row counts of the search's database blocks (``exact.database_block``)."""
    elements = CUDA_BLOCK_ELEMENTS if device.type == "cuda" else BLOCK_ELEMENTS
    size = database_block(queries, K, dim, QUERY_BLOCK, elements)
    return [min(size, rows - start) for start in range(0, rows, size)]


def buffers_mb(queries: int, dim: int) -> float:
    """Host memory the CPU search holds for its blocks: the float16 read buffer, its float32 copy, the
    distance block and the float32 queries."""
    rows = blocks_of(10**12, dim, queries, torch.device("cpu"))[0]
    return (rows * dim * (2 + 4) + min(queries, QUERY_BLOCK) * rows * 4 + queries * dim * 4) / 2**20


def measure(label, database, queries, device, limit_s, repeats, sources) -> float:
    """One search line: ms/query, ratio to the limit, top-1 agreement; returns ms/query."""
    found = {}

    def run():
        found["indices"] = search(database, queries, K, device=device)[1]

    seconds = best_s(run, repeats=repeats)  # the search returns host arrays: the GPU has finished
    ms = 1000 * seconds / len(queries)
    top1 = 100 * np.mean(found["indices"][:, 0] == sources)
    print(
        f"  {label:<58} {ms:9.3f} ms/query  {limit_s / seconds:.2f} of the limit (target >= 0.8), "
        f"top-1 = source row {top1:.1f} %"
    )
    return ms


def extrapolate(label: str, ms: float, rows: int, dim: int, n_queries: int, peak_mb: float | None = None):
    """What 2.8 M rows at 512 and 2048 dimensions would take at the measured rate."""
    for target_dim in (512, 2048):
        factor = SFXL_ROWS * target_dim / (rows * dim)
        memory = ""
        if peak_mb is not None:
            grown = buffers_mb(n_queries, target_dim) - buffers_mb(n_queries, dim)
            memory = f", peak RSS ≈ {peak_mb + grown:.0f} MB (measured + larger block buffers)"
        print(
            f"  2.8 M × {target_dim} ({SFXL_ROWS * target_dim * 2 / 1e9:.1f} GB float16), {label}: "
            f"{ms * factor:.2f} ms/query, {ms * factor * n_queries / 1000:.0f} s for {n_queries} queries"
            f"{memory}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cuda: also the GPU, streamed and resident")
    parser.add_argument("--dir", default=None, help="folder for the temporary file [default: the system's]")
    args = parser.parse_args()
    device = torch.device(args.device)
    rng = np.random.default_rng(1)
    sources = np.sort(rng.choice(args.rows, args.queries, replace=False))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "database.npy"
        started = time.perf_counter()
        picked = write_database(path, args.rows, args.dim, sources)
        queries = picked + rng.normal(scale=0.01, size=picked.shape).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        written_s = time.perf_counter() - started
        print(
            f"torch {torch.__version__} ({torch.get_num_threads()} threads); {args.rows} × {args.dim} "
            f"float16 file ({path.stat().st_size / 1e9:.2f} GB, written in {written_s:.0f} s), "
            f"{args.queries} queries, top-{K}, best of {args.repeats}"
        )
        database = np.load(path, mmap_mode="r")
        streamed = database.nbytes > STREAM_BYTES
        if not streamed:
            print(f"  (a file under {STREAM_BYTES >> 20} MB is sliced through its mapping, not streamed)")
        cpu = torch.device("cpu")
        ms = run_on(cpu, database, queries, sources, args)
        peak_mb = peak_rss_mb()
        print(f"  peak RSS of this process so far: {peak_mb:.0f} MB (target <= 1536 MB)")
        extrapolate("CPU", ms, args.rows, args.dim, args.queries, peak_mb if streamed else None)
        if device.type == "cuda":
            ms_streamed = run_on(device, database, queries, sources, args)
            extrapolate("GPU, streamed from the file", ms_streamed, args.rows, args.dim, args.queries)
            ms_resident = run_resident(device, path, database, queries, sources, args)
            extrapolate("GPU, resident float16", ms_resident, args.rows, args.dim, args.queries)


def run_on(device: torch.device, database: np.ndarray, queries: np.ndarray, sources, args) -> float:
    """The limit and the search streamed from the memory-mapped file, on ``device``."""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    block_rows = blocks_of(*database.shape, len(queries), device)
    block = torch.from_numpy(np.asarray(database[: block_rows[0]], dtype=np.float32)).to(device)
    queries_on = torch.from_numpy(queries).to(device)
    limit_s = best_s(gemm_limit, queries_on, block, block_rows, QUERY_BLOCK, repeats=args.repeats)
    del block
    print(f"{where}: {len(block_rows)} blocks of {block_rows[0]} rows")
    label = f"GEMM limit (q @ block.T + topk, {device.type})"
    print(f"  {label:<58} {1000 * limit_s / len(queries):9.3f} ms/query  1.00")
    label = f"search, memory-mapped file ({device.type})"
    return measure(label, database, queries, device, limit_s, args.repeats, sources)


def run_resident(device: torch.device, path: Path, database: np.ndarray, queries, sources, args) -> float:
    """The search on the database resident on the GPU as float16 (the engine's path when it extracted
    there), queries there too, against the same limit."""
    resident = torch.empty(database.shape, dtype=torch.float16, device=device)
    header, dim = path.stat().st_size - database.nbytes, database.shape[1]
    for start in range(0, len(database), CHUNK):  # read a chunk at a time, not through the mapping
        rows = min(CHUNK, len(database) - start)
        chunk = np.fromfile(path, np.float16, rows * dim, offset=header + start * dim * 2)
        resident[start : start + rows] = torch.from_numpy(chunk.reshape(rows, dim)).to(device)
    block_rows = blocks_of(*database.shape, len(queries), device)
    queries_on = torch.from_numpy(queries).to(device)
    torch.cuda.reset_peak_memory_stats(device)
    block = resident[: block_rows[0]].float()
    limit_s = best_s(gemm_limit, queries_on, block, block_rows, QUERY_BLOCK, repeats=args.repeats)
    print(f"  {'GEMM limit on the GPU, the same blocks':<58} {1000 * limit_s / len(queries):9.3f} ms/query")
    label = "search, resident float16 tensor (cuda)"
    ms = measure(label, resident, queries_on, device, limit_s, args.repeats, sources)
    print(f"  peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MB")
    return ms


if __name__ == "__main__":
    main()
