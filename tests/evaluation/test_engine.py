import shutil

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from vpr_bench.errors import DatasetError
from vpr_bench.runner import evaluate_run

CPU = torch.device("cpu")


def _split(cfg):
    import vpr_bench
    from vpr_bench.datasets import load_split

    vpr_bench.load_all()  # the metrics' registry
    return load_split(cfg.data, cfg.eval.split)[1]


def test_corrupt_image_found_during_extraction_names_the_file(synthetic_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    victim = sorted((root / "images/test/database").iterdir())[5]  # not among the validation samples
    victim.write_bytes(victim.read_bytes()[:100])
    cfg = tiny_config(**{"data.dataset": f"folder:{root}", "eval.num_workers": 2, "out": str(tmp_path / "r")})
    with pytest.raises(DatasetError, match=rf"cannot read image .*{victim.name[:20]}") as err:
        evaluate_run(cfg)
    assert "Traceback" not in str(err.value)
    assert not list((tmp_path / "r").glob("*/*/*/metrics.json"))  # no record for a failed run


def test_drop_queries_without_positives(synthetic_root, tmp_path):
    cfg = tiny_config(
        **{
            "data.dataset": f"folder:{synthetic_root}",
            "data.pos_radius": 3.0,
            "data.drop_queries_without_positives": True,
            "out": str(tmp_path),
        }
    )
    run_dir = evaluate_run(cfg)
    import json

    protocol = json.loads((run_dir / "metrics.json").read_text())["protocol"]
    assert protocol["pos_radius_m"] == 3.0 and protocol["queries_without_positives"] > 0
    assert (
        protocol["num_queries_evaluated"] == protocol["num_queries"] - protocol["queries_without_positives"]
    )


# ---- cost figures: a timing pass of the query model, peak memory per phase -----------------------------
def test_record_says_how_ms_per_image_and_peak_memory_were_measured(synthetic_root, tmp_path):
    import json

    cfg = tiny_config(**{"data.dataset": f"folder:{synthetic_root}", "out": str(tmp_path)})
    cost = json.loads((evaluate_run(cfg) / "metrics.json").read_text())["cost"]
    timing, memory = cost["timing"], cost["memory"]
    assert cost["ms_per_image"] > 0 and timing["min_ms_per_image"] <= cost["ms_per_image"]
    assert timing["batch"] == 32 and cost["batch_size"] == 64  # the CPU cap, not the extraction batch
    assert timing["threads"] == torch.get_num_threads() and timing["repeats"] >= 3
    assert f"median of {timing['repeats']} timed forwards" in timing["method"]
    for phase in ("extract", "search"):
        assert memory[f"{phase}_peak_rss_mb"] > 0 and memory[f"{phase}_rss_increase_mb"] >= 0
    assert cost["peak_rss_mb"] == max(memory["extract_peak_rss_mb"], memory["search_peak_rss_mb"])
    assert "extract" in memory["how"] and "search" in memory["how"]


def test_validation_can_skip_the_timing_pass(synthetic_root, monkeypatch):
    import vpr_bench.evaluation.sections as sections
    from tests.evaluation.test_descriptors import Sleepy
    from vpr_bench.evaluation.engine import evaluate

    def no_timing(*args, **kwargs):
        raise AssertionError("the timing pass ran")

    monkeypatch.setattr(sections, "time_forward", no_timing)
    cfg = tiny_config(**{"data.dataset": f"folder:{synthetic_root}"})
    cost = evaluate(Sleepy(), _split(cfg), cfg, CPU, count_flops=False, time_model=False).cost
    assert cost["ms_per_image"] is None and cost["timing"] is None and cost["gflops_per_image"] is None
    assert cost["memory"]["extract_peak_rss_mb"] > 0  # memory is still measured: it costs nothing


def test_asymmetric_cost_figures_are_the_query_models(synthetic_root, one_thread):
    from tests.evaluation.test_descriptors import Sleepy
    from vpr_bench.evaluation.engine import evaluate

    cfg = tiny_config(**{"data.dataset": f"folder:{synthetic_root}"})
    split = _split(cfg)
    fast, slow = Sleepy(), Sleepy(0.1)  # 4-d descriptors both
    slow_alone = evaluate(slow, split, cfg, CPU, count_flops=False).cost["ms_per_image"]
    asymmetric = evaluate(fast, split, cfg, CPU, database_model=slow, count_flops=False).cost
    assert asymmetric["ms_per_image"] < slow_alone / 3  # the slow database model is not timed
    assert asymmetric["timing"]["threads"] == 1


def test_a_phase_peak_is_its_own_not_the_process_lifetime_peak():
    import resource
    import time

    import numpy as np

    from vpr_bench.evaluation.memory import PhaseMemory

    earlier = np.ones(300 * 2**17)  # 300 MB touched, then returned to the system before any phase
    del earlier
    with PhaseMemory(CPU, interval_s=0.005) as memory:
        memory.phase("extract")
        block = np.ones(100 * 2**17)  # 100 MB, gone again before the phase ends: only the sampler sees it
        time.sleep(0.1)
        del block
        memory.phase("search")
        time.sleep(0.05)
    figures = memory.figures
    assert figures["extract_rss_increase_mb"] >= 80
    assert figures["search_rss_increase_mb"] < 20
    assert figures["extract_peak_rss_mb"] - figures["search_peak_rss_mb"] >= 80
    lifetime_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert memory.peak("rss") == figures["extract_peak_rss_mb"] < lifetime_mb - 150
    assert memory.peak("gpu") is None


def test_phase_memory_stops_its_sampler_when_the_evaluation_fails():
    import threading

    from vpr_bench.evaluation.memory import PhaseMemory

    with pytest.raises(RuntimeError), PhaseMemory(CPU) as memory:
        memory.phase("extract")
        assert any(t.name == "rss-extract" for t in threading.enumerate())
        raise RuntimeError("a corrupt image")
    assert not any(t.name.startswith("rss-") for t in threading.enumerate())
    assert memory.figures["extract_peak_rss_mb"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_peak_is_per_phase():
    from vpr_bench.evaluation.memory import PhaseMemory

    device = torch.device("cuda")
    with PhaseMemory(device) as memory:
        memory.phase("extract")
        block = torch.ones(64 * 2**20, device=device)  # 256 MB
        del block
        memory.phase("search")
    figures = memory.figures
    assert figures["extract_peak_gpu_mb"] >= 256 > figures["search_peak_gpu_mb"] + 200
    assert memory.peak("gpu") == figures["extract_peak_gpu_mb"]
    assert "max_memory_allocated" in memory.describe()["how"]


class BatchMixing(torch.nn.Module):
    """A descriptor that depends on the other images of its forward pass (as a cross-image encoder's):
    each image's mean colour minus the batch's; it notes the batches it is given."""

    batch_dependent = True

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(images))
        colours = images.mean(dim=(2, 3))  # (B, 3)
        return torch.cat([colours - colours.mean(dim=0), torch.ones(len(images), 1)], dim=1)


@pytest.mark.parametrize("batch_size", [4, 1])
def test_a_batch_dependent_model_is_described_and_recorded_in_the_official_way(synthetic_root, batch_size):
    """Database, then queries, each alone in the split's order, by ``eval.batch_size`` with the last batch
    partial — and the record's protocol says so; a batch of 1 is one image at a time."""
    from vpr_bench.datasets.images import ImageList, data_transform
    from vpr_bench.evaluation.engine import evaluate

    cfg = tiny_config(**{"data.dataset": f"folder:{synthetic_root}", "eval.batch_size": batch_size})
    split, model = _split(cfg), BatchMixing()
    evaluation = evaluate(model, split, cfg, CPU, count_flops=False, time_model=False)

    def chunks(count: int) -> list[int]:
        return [min(batch_size, count - start) for start in range(0, count, batch_size)]

    assert model.batches == chunks(split.num_database) + chunks(split.num_queries)
    images = ImageList(split.query_paths, data_transform(model, cfg.data))
    queries = torch.stack([images[i][0] for i in range(len(images))])
    with torch.inference_mode():
        expected = torch.cat([model(queries[i : i + batch_size]) for i in range(0, len(queries), batch_size)])
    assert np.allclose(
        evaluation.query_descriptors, torch.nn.functional.normalize(expected).numpy(), atol=1e-6
    )
    assert evaluation.protocol["batching"] == {
        "batch_dependent": True, "batch_size": batch_size, "database_and_queries": "separately",
        "order": "dataset", "last_batch": "partial, kept", "one_image_at_a_time": batch_size == 1,
    }  # fmt: skip
    assert "database_batching" not in evaluation.protocol


def test_a_batch_independent_model_has_no_batching_in_its_protocol(synthetic_root):
    from tests.evaluation.test_descriptors import Sleepy
    from vpr_bench.evaluation.engine import evaluate

    cfg = tiny_config(**{"data.dataset": f"folder:{synthetic_root}"})
    assert (
        "batching"
        not in evaluate(Sleepy(), _split(cfg), cfg, CPU, count_flops=False, time_model=False).protocol
    )


def test_flops_are_counted_for_a_model_passing_a_parameter_to_a_submodule():
    """BoQ passes its learned queries to an attention module: the counter's module tracker used to fail on
    that under no_grad (the record then had no GFLOPs); the parameters keep their requires_grad."""
    from vpr_bench.evaluation.sections import gflops_per_image

    class Queries(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.queries = torch.nn.Parameter(torch.randn(1, 4, 8))
            self.attend = torch.nn.MultiheadAttention(8, 2, batch_first=True)
            self.conv = torch.nn.Conv2d(3, 8, 3)

        def forward(self, images):
            features = self.conv(images).flatten(2).mean(2)  # (B, 8)
            queries = self.queries.expand(len(images), -1, -1)  # a view of a parameter, as BoQ's
            queries = self.attend(queries, queries, queries, need_weights=False)[0]
            return (features.unsqueeze(1) * queries).sum(2)  # (B, 4)

    model = Queries()
    model.conv.requires_grad_(False)
    flops = gflops_per_image(model, (16, 16), CPU)
    assert flops is not None and flops > 0
    assert [p.requires_grad for p in model.parameters()][-2:] == [False, False]
    assert all(p.requires_grad for p in list(model.parameters())[:-2])
