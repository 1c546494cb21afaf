"""Peak memory per phase of an evaluation (extraction, search), not of the process's lifetime."""

from __future__ import annotations

import threading

import psutil
import torch


class PhaseMemory:
    """Peak memory of each phase of one evaluation (``memory.phase("extract")`` …), not of the process's
    lifetime, which would count, e.g., a teacher trained earlier in the same process.

    While a phase runs a daemon thread samples this process's resident set size (psutil) every
    ``interval_s``; on CUDA the phase also starts from ``torch.cuda.reset_peak_memory_stats``.
    """

    def __init__(self, device: torch.device, interval_s: float = 0.01):
        self.device, self.interval_s = device, interval_s
        self.figures: dict[str, float] = {}  # e.g. extract_peak_rss_mb, extract_rss_increase_mb
        self._process = psutil.Process()
        self._phase: str | None = None

    def __enter__(self) -> PhaseMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.phase(None)

    def phase(self, name: str | None) -> None:
        """End the running phase (its figures recorded) and start ``name`` (None: none)."""
        if self._phase is not None:
            self._stopped.set()
            self._sampler.join()
            peak = max(self._peak_rss, self._process.memory_info().rss)
            ended = {"peak_rss": peak, "rss_increase": peak - self._start_rss}
            if self.device.type == "cuda":
                ended["peak_gpu"] = torch.cuda.max_memory_allocated(self.device)
            self.figures.update({f"{self._phase}_{k}_mb": round(v / 2**20, 1) for k, v in ended.items()})
        self._phase = name
        if name is None:
            return
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._start_rss = self._peak_rss = self._process.memory_info().rss
        self._stopped = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name=f"rss-{name}", daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self._peak_rss = max(self._peak_rss, self._process.memory_info().rss)

    def peak(self, kind: str = "rss") -> float | None:
        """The highest of the phases' peaks ("rss" or "gpu"); None when none was measured."""
        values = [v for k, v in self.figures.items() if k.endswith(f"_peak_{kind}_mb")]
        return max(values, default=None)

    def describe(self) -> dict:
        how = (
            "extract: database and query descriptors (queries only in asymmetric evaluation); search: "
            "index build and k-NN search. *_peak_rss_mb: the highest resident set size sampled every "
            f"{self.interval_s * 1000:g} ms (psutil) during the phase, including what the process already "
            "held (weights, an earlier training's heap); *_rss_increase_mb: that minus the RSS at the "
            "phase's start"
        )
        if self.device.type == "cuda":
            how += (
                "; *_peak_gpu_mb: torch.cuda.max_memory_allocated after reset_peak_memory_stats at its start"
            )
        return {**self.figures, "how": how}
