"""The timing pass behind ``cost.ms_per_image``: a fixed synthetic batch, warm-ups, median of repeats."""

import time

import pytest
import torch
from torch import nn

from vpr_bench.evaluation.descriptors import CPU_TIMING_BATCH, MIN_TIMED_REPEATS, time_forward

CPU = torch.device("cpu")


class Sleepy(nn.Module):
    """A tiny descriptor network that also sleeps a known time per forward (the same for any batch)."""

    def __init__(self, sleep_s: float = 0.0):
        super().__init__()
        self.sleep_s = sleep_s
        self.conv = nn.Conv2d(3, 4, 3)
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.sleep_s:
            if images.is_cuda:  # the sleep must land inside the synchronised, timed region
                torch.cuda.synchronize(images.device)
            time.sleep(self.sleep_s)
        return self.conv(images).mean(dim=(2, 3))  # (B, 4)


def test_timing_pass_reports_a_positive_median_and_how_it_was_measured(one_thread):
    model = Sleepy().train()
    rng_state = torch.random.get_rng_state()
    ms, how = time_forward(model, (32, 24), CPU, batch_size=64, warmup=2, repeats=5)
    assert ms > 0 and how["min_ms_per_image"] <= ms <= how["max_ms_per_image"]
    assert how["batch"] == CPU_TIMING_BATCH == 32  # 64 capped on a CPU
    assert how["repeats"] == 5 and how["warmup"] == 2 and model.calls == 2 + 5
    assert how["threads"] == 1  # what torch runs with now, not a default
    assert "median of 5 timed forwards" in how["method"] and "32 synthetic 32x24 images" in how["method"]
    assert model.training  # left as it was found
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # the global RNG is not consumed


def test_a_model_that_sleeps_longer_per_forward_reports_a_proportionally_larger_ms_per_image(one_thread):
    fast, _ = time_forward(Sleepy(0.02), (16, 16), CPU, batch_size=4, warmup=1, repeats=5)
    slow, _ = time_forward(Sleepy(0.08), (16, 16), CPU, batch_size=4, warmup=1, repeats=5)
    assert 2.5 < slow / fast < 6.0  # 4× the sleep; generous for a busy machine


def test_ms_per_image_divides_the_batch_time_by_the_batch(one_thread):
    small, how_small = time_forward(Sleepy(0.02), (16, 16), CPU, batch_size=4, warmup=1, repeats=5)
    large, how_large = time_forward(Sleepy(0.02), (16, 16), CPU, batch_size=16, warmup=1, repeats=5)
    assert (how_small["batch"], how_large["batch"]) == (4, 16)
    assert 2.5 < small / large < 6.0  # the same time per forward over 4× the images


def test_timed_forwards_stop_early_once_the_budget_is_spent(one_thread):
    model = Sleepy(0.03)
    _, how = time_forward(model, (16, 16), CPU, batch_size=2, warmup=1, repeats=50, budget_s=0.01)
    assert how["repeats"] == MIN_TIMED_REPEATS and model.calls == 1 + MIN_TIMED_REPEATS
    assert f"median of {MIN_TIMED_REPEATS} timed forwards" in how["method"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_timing_pass_on_cuda_waits_for_the_kernels_and_keeps_the_batch():
    device = torch.device("cuda")
    fast, how = time_forward(Sleepy(0.01).to(device), (32, 32), device, batch_size=64, warmup=2, repeats=5)
    slow, _ = time_forward(Sleepy(0.04).to(device), (32, 32), device, batch_size=64, warmup=2, repeats=5)
    assert how["batch"] == 64 and "cuda" in how["method"]  # no CPU cap on a GPU
    assert 2.5 < slow / fast < 6.0
