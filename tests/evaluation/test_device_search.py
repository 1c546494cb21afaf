"""Where the search runs and in what precision: ``--index flat-fp16``, descriptors kept on a GPU for the
search, the miner's distance blocks on the model's device."""

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from tests.evaluation.test_descriptors import Sleepy
from tests.evaluation.test_engine import _split
from vpr_bench.datasets.images import data_transform
from vpr_bench.evaluation import engine
from vpr_bench.evaluation.descriptors import as_array, device_array, extract
from vpr_bench.evaluation.engine import evaluate
from vpr_bench.evaluation.matching import IndexSpec, database_dtype, index_spec, search

CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize(
    "index, dtype, spec, stored",
    [
        ("flat", "float32", IndexSpec("flat"), "float32"),
        ("flat-fp16", "float32", IndexSpec("flat", fp16=True), "float16"),
        ("flat", "float16", IndexSpec("flat", fp16=True), "float16"),  # a float16 database as it is
        ("ivfpq", "float16", IndexSpec("ivfpq"), "float16"),
    ],
)
def test_index_flat_fp16_is_the_flat_index_over_a_float16_database(index, dtype, spec, stored):
    settings = tiny_config(**{"eval.index": index, "eval.descriptor_dtype": dtype}).eval
    assert index_spec(settings) == spec and database_dtype(settings) == np.dtype(stored)


def test_flat_fp16_searches_what_float16_descriptors_search(synthetic_root, monkeypatch):
    searched = []
    real_search = engine.search

    def spy(database, *args, **kwargs):
        searched.append(database.dtype)
        return real_search(database, *args, **kwargs)

    monkeypatch.setattr(engine, "search", spy)
    runs = {}
    for name, overrides in {
        "flat-fp16": {"eval.index": "flat-fp16"},
        "float16": {"eval.descriptor_dtype": "float16"},
        "flat": {},
    }.items():
        cfg = tiny_config(**{"data.dataset": f"folder:{synthetic_root}", **overrides})
        torch.manual_seed(0)  # one model for all three
        runs[name] = evaluate(Sleepy(), _split(cfg), cfg, CPU, count_flops=False, time_model=False)
    assert searched == [np.float16, np.float16, np.float32]  # stored as float16, a flat-fp16 search
    assert runs["flat-fp16"].protocol["index"] == runs["float16"].protocol["index"] == "flat-fp16"
    assert runs["flat"].protocol["index"] == "flat"
    np.testing.assert_array_equal(runs["flat-fp16"].predictions.indices, runs["float16"].predictions.indices)


def test_keep_on_device_changes_nothing_on_a_cpu(synthetic_root):
    cfg = tiny_config(**{"data.dataset": f"folder:{synthetic_root}"})
    model = Sleepy()
    paths = _split(cfg).database_paths[:10]
    options = dict(transform=data_transform(model, cfg.data), device=CPU, num_workers=0, quiet=True)
    kept, _ = extract(model, paths, keep_on_device=True, **options)
    plain, _ = extract(model, paths, **options)
    assert isinstance(kept, np.ndarray) and np.array_equal(kept, plain)
    assert device_array((10, 4), np.float32, CPU) is None and as_array(kept) is kept


def test_a_database_file_is_handed_back_as_a_fresh_read_only_mapping(synthetic_root, tmp_path):
    cfg = tiny_config(**{"data.dataset": f"folder:{synthetic_root}"})
    model = Sleepy()
    paths = _split(cfg).database_paths[:10]
    options = dict(transform=data_transform(model, cfg.data), device=CPU, num_workers=0, quiet=True)
    mapped, _ = extract(model, paths, out_file=tmp_path / "db.npy", dtype=np.float16, **options)
    in_memory, _ = extract(model, paths, dtype=np.float16, **options)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable  # not the mapping written through
    np.testing.assert_array_equal(mapped, in_memory)


@needs_cuda
def test_descriptors_extracted_on_a_gpu_stay_there_for_the_search(synthetic_root, monkeypatch):
    cuda = torch.device("cuda")
    searched = []
    real_search = engine.search

    def spy(database, queries, k, *args, **kwargs):
        searched.append((database, queries, k))
        return real_search(database, queries, k, *args, **kwargs)

    monkeypatch.setattr(engine, "search", spy)
    results = {}
    for device, index in ((CPU, "flat-fp16"), (cuda, "flat-fp16"), (cuda, "flat")):
        cfg = tiny_config(**{"data.dataset": f"folder:{synthetic_root}", "eval.index": index})
        torch.manual_seed(0)  # one model on both devices
        model = Sleepy()
        results[device.type, index] = evaluate(
            model, _split(cfg), cfg, device, count_flops=False, time_model=False
        )
    (cpu_db, _, _), (gpu_db, gpu_queries, k), (gpu_flat, _, _) = searched
    assert isinstance(gpu_db, torch.Tensor) and gpu_db.is_cuda and gpu_db.dtype == torch.float16
    assert isinstance(gpu_flat, torch.Tensor) and gpu_flat.is_cuda and gpu_flat.dtype == torch.float32
    # the same model's descriptors on either device (cuDNN's convolutions round differently)
    np.testing.assert_allclose(as_array(gpu_db).astype(np.float32), cpu_db.astype(np.float32), atol=5e-3)
    # the search on the resident tensor ranks as the host search of the same descriptors
    _, on_host, _ = search(as_array(gpu_db), gpu_queries, k, IndexSpec("flat", fp16=True))
    assert (results["cuda", "flat-fp16"].predictions.indices == on_host).mean() > 0.99


@needs_cuda
def test_the_miner_gives_the_cpu_tuples_on_a_gpu():
    from tests.training.test_mining import setup
    from vpr_bench.training.mining import HardNegativeMiner

    train, near = setup()
    rng = np.random.default_rng(0)
    db, q = rng.normal(size=(20, 8)).astype(np.float32), rng.normal(size=(3, 8)).astype(np.float32)
    mined = []
    for device in ("cpu", "cuda"):
        miner = HardNegativeMiner(
            train, near, negatives=2, negative_samples=50, mining_margin=10.0, device=device
        )
        mined.append(miner.mine(q, db, np.random.default_rng(0)))
    for field in ("queries", "positives", "negatives"):
        np.testing.assert_array_equal(getattr(mined[0], field), getattr(mined[1], field))
