"""Which device a run computes on (``--device auto|cpu|cuda[:N]``), and how a record names it."""

from __future__ import annotations

import os
import platform

import torch

from vpr_bench.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU. A CUDA device on a machine without CUDA fails,
    naming the option."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """The card's name on a GPU ("NVIDIA H200"); on a CPU its model name, core count and the threads
    torch computes with ("AMD EPYC 7B13 (16 cores, 8 threads)"): what a run's timings depend on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            name = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
