"""The exact search on torch returns faiss flat's neighbours and distances."""

from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from vpr_bench.evaluation import exact
from vpr_bench.evaluation.exact import exact_search, file_region
from vpr_bench.evaluation.matching import IndexSpec, search


def data(n_db, n_q, dim=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_db, dim)).astype(np.float32), rng.normal(size=(n_q, dim)).astype(np.float32)


def faiss_flat(database, queries, k):
    index = faiss.IndexFlatL2(database.shape[1])
    index.add(database)
    return index.search(queries, k)


def assert_same_as_faiss(database, queries, k, **kwargs):
    want_d, want_i = faiss_flat(database, queries, k)
    got_d, got_i = exact_search(database, queries, k, **kwargs)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-5, atol=1e-4)
    differ = got_i != want_i
    # where the neighbours differ the two distances must be an exact tie (up to float rounding)
    gap = np.abs(want_d - got_d)[differ]
    assert differ.mean() < 1e-3 and np.all(gap <= 1e-4 * np.maximum(1, want_d[differ]))


@pytest.mark.parametrize("block_elements", [1 << 23, 3000])  # one block, and many blocks to merge
def test_same_neighbours_as_faiss_flat(block_elements):
    database, queries = data(2500, 300)
    assert_same_as_faiss(database, queries, 20, query_block=128, block_elements=block_elements)


def test_search_flat_is_the_exact_search_and_counts_time():
    database, queries = data(1000, 50, seed=3)
    dist, idx, ms = search(database, queries, 10)
    want_d, want_i = faiss_flat(database, queries, 10)
    assert (idx == want_i).mean() > 0.999 and ms > 0
    np.testing.assert_allclose(dist, want_d, rtol=1e-5, atol=1e-4)


def test_database_smaller_than_k():
    database, queries = data(7, 5, seed=1)
    dist, idx = exact_search(database, queries, 20)
    assert idx.shape == dist.shape == (5, 7)
    assert all(sorted(row) == list(range(7)) for row in idx.tolist())
    assert np.all(np.diff(dist, axis=1) >= 0)
    _, idx, _ = search(database, queries, 20)  # the engine's path caps k too, no -1 ranks
    assert idx.shape == (5, 7) and idx.min() >= 0


def test_exact_ties_are_ordered_by_index():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(10, 16)).astype(np.float32)
    database = np.concatenate([base, base, base])  # rows i, i+10, i+20 are identical
    dist, idx = exact_search(database, base, 3, block_elements=7)  # ties split across blocks
    assert idx.tolist() == [[i, i + 10, i + 20] for i in range(10)]
    np.testing.assert_allclose(dist, 0, atol=1e-4)


def test_float16_database_matches_faiss_fp16_quantiser():
    database, queries = data(1500, 100, dim=64, seed=4)
    half = database.astype(np.float16)
    index = faiss.IndexScalarQuantizer(64, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
    index.train(database)
    index.add(database)
    want_d, want_i = index.search(queries, 10)
    got_d, got_i, _ = search(half, queries, 10, IndexSpec("flat", fp16=True))
    assert (got_i == want_i).mean() > 0.999
    np.testing.assert_allclose(got_d, want_d, rtol=1e-4, atol=1e-3)


def test_memory_mapped_and_strided_inputs(tmp_path):
    database, queries = data(800, 40, seed=5)
    np.save(tmp_path / "db.npy", database)
    mapped = np.load(tmp_path / "db.npy", mmap_mode="r")
    want = exact_search(database, queries, 5)
    for db, q in ((mapped, queries), (database, np.asfortranarray(queries)), (database[:, :], queries[::1])):
        got = exact_search(db, q, 5, block_elements=5000)
        np.testing.assert_array_equal(got[1], want[1])


def test_no_queries():
    database, _ = data(10, 1)
    dist, idx = exact_search(database, database[:0], 5)
    assert dist.shape == idx.shape == (0, 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_neighbours():
    database, queries = data(3000, 200, seed=6)
    cpu = exact_search(database, queries, 10)
    gpu = exact_search(database, queries, 10, device="cuda")
    assert (cpu[1] == gpu[1]).mean() > 0.999


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_a_streamed_memory_mapped_database_gives_the_in_memory_results(tmp_path, monkeypatch, dtype):
    database, queries = data(3000, 60, seed=7)
    database = database.astype(dtype)
    np.save(tmp_path / "db.npy", database)
    mapped = np.load(tmp_path / "db.npy", mmap_mode="r")
    tail = mapped[1000:]  # a view: its rows start inside the file
    want, want_tail = exact_search(database, queries, 10), exact_search(database[1000:], queries, 10)

    def no_slicing(*_):
        raise AssertionError("the streamed search sliced the mapping")

    monkeypatch.setattr(np.memmap, "__getitem__", no_slicing)  # read from the file, block by block
    for db, expected in ((mapped, want), (tail, want_tail)):
        got = exact_search(db, queries, 10, block_elements=3000, query_block=16, stream_above=0)
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)  # other blocks: other GEMM rounding


def test_file_region_of_a_mapped_array_and_its_views(tmp_path):
    database = np.arange(60, dtype=np.float16).reshape(20, 3)
    np.save(tmp_path / "db.npy", database)
    header = (tmp_path / "db.npy").stat().st_size - database.nbytes
    mapped = np.load(tmp_path / "db.npy", mmap_mode="r")
    path, offset = file_region(mapped)
    assert Path(path).resolve() == (tmp_path / "db.npy").resolve() and offset == header
    assert file_region(mapped[5:]) == (path, header + 5 * 3 * 2)
    assert file_region(mapped[:, 1:]) is None  # not contiguous
    assert file_region(np.load(tmp_path / "db.npy", mmap_mode="c")) is None  # copy-on-write
    assert file_region(database) is None


def test_tensor_databases_and_several_query_passes_give_the_array_results(monkeypatch):
    database, queries = data(2000, 90, seed=8)
    want = exact_search(database, queries, 10)
    for db in (torch.from_numpy(database), torch.from_numpy(database.astype(np.float16))):
        got = exact_search(db, torch.from_numpy(queries), 10, block_elements=3000)
        half = exact_search(database.astype(np.float16), queries, 10, block_elements=3000)
        expected = want if db.dtype == torch.float32 else half
        np.testing.assert_array_equal(got[1], expected[1])
    monkeypatch.setattr(exact, "QUERY_PASS_ELEMENTS", 20 * database.shape[1])  # passes of two 7-query blocks
    got = exact_search(database, queries, 10, query_block=7)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-5)


def test_round_float16_searches_the_rounded_database():
    database, queries = data(1500, 80, dim=64, seed=9)
    rounded = exact_search(database, queries, 10, round_float16=True, block_elements=5000)
    half = exact_search(database.astype(np.float16), queries, 10, block_elements=5000)
    np.testing.assert_array_equal(rounded[1], half[1])
    np.testing.assert_array_equal(rounded[0], half[0])
    assert not np.array_equal(rounded[0], exact_search(database, queries, 10)[0])  # it did round


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_database_resident_on_the_gpu_gives_the_cpu_neighbours():
    database, queries = data(3000, 200, seed=10)
    cpu = exact_search(database.astype(np.float16), queries, 10)
    resident = torch.from_numpy(database).to("cuda", torch.float16)
    gpu = exact_search(resident, queries, 10)  # runs on the tensor's device
    assert (cpu[1] == gpu[1]).mean() > 0.999
