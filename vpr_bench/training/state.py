"""Training state on disk: written atomically, read with ``weights_only=True``.

``last.pt`` holds everything needed to continue (model, optimiser, scheduler, epoch, position in the
epoch, the current round's mined tuples, the miner's negative cache, RNG states, early-stopping state);
``best.safetensors`` the weights with the best validation R@1. The trainer writes both through a
``StateWriter``: a ``snapshot`` in CPU memory is taken at once, the file is written in the background.
"""

from __future__ import annotations

import copy
import io
import random
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

from vpr_bench._io import atomic_write_bytes
from vpr_bench.checkpoints import load_state_dict
from vpr_bench.errors import CheckpointError, VPRBenchError

LAST = "last.pt"
BEST = "best.safetensors"


def save_state(path: Path, state: dict) -> None:
    buffer = io.BytesIO()  # torch.save into a file would turn a full disk's OSError into a RuntimeError
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getbuffer())  # a view: not copied once more


def load_state(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(
            f"{path} does not exist: nothing to resume (was the run started with this version?)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot resume from {path}: {str(exc).splitlines()[0]}") from None


def save_weights(path: Path, model: torch.nn.Module) -> None:
    write_weights(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})


def write_weights(path: Path, weights: dict[str, torch.Tensor]) -> None:
    """``weights`` (CPU tensors, e.g. a snapshot's ``"model"``) as safetensors."""
    atomic_write_bytes(path, safetensors_bytes({k: v.contiguous() for k, v in weights.items()}))


def load_best(model: torch.nn.Module, run_dir: Path) -> None:
    model.load_state_dict(load_state_dict(run_dir / BEST))


def rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def snapshot(value: Any) -> Any:
    """A copy of ``value`` (a state dict, nested containers) in CPU memory that later training steps
    cannot change: tensors and numpy arrays are copied (from the GPU too), containers rebuilt (a module
    state dict keeps its ``_metadata``), other values deep-copied."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        items = ((key, snapshot(item)) for key, item in value.items())
        copied = OrderedDict(items) if isinstance(value, OrderedDict) else dict(items)
        if hasattr(value, "_metadata"):
            copied._metadata = copy.deepcopy(value._metadata)
        return copied
    if isinstance(value, (list, tuple)):
        items = [snapshot(item) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return copy.deepcopy(value)


Write = tuple[Callable[[Path, Any], None], Path, Any]  # (writer, path, what it writes)


class StateWriter:
    """Writes training files in a background thread while training goes on: one job at a time (a new
    job first waits for the one in flight), the files of a job in order, each atomically, so a
    ``kill -9`` at any moment leaves every file's previous complete version. A failed write is raised in
    the training thread by the next ``submit`` or ``wait``."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, *writes: Write) -> None:
        """Start writing ``writes`` (their data must not change any more: pass ``snapshot``s)."""
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(writes,), name="vpr-bench state writer")
        self._thread.start()

    def _write(self, writes: tuple[Write, ...]) -> None:
        try:
            for write, path, data in writes:
                write(path, data)
        except BaseException as exc:  # handed to the training thread by wait()
            self._error = exc

    def wait(self) -> None:
        """Block until the job in flight is on disk; raise its error, if any (a full disk: a
        ``WriteError`` saying the previous file is kept)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if isinstance(error, VPRBenchError):
            raise error
        if error is not None:
            raise CheckpointError(f"writing the training state failed: {error!r}") from error


class Checkpoints:
    """When a trainer's state is written, and the writing: inside an epoch every ``every_min`` minutes
    and every ``every`` steps (0: not on that basis; ``due``), besides where the trainer always writes
    (each mining round, each epoch's end, Ctrl-C). After validation improves (``best_due``) the next
    write puts the best weights first."""

    def __init__(self, run_dir: Path, every_min: float, every: int, clock: Callable[[], float]):
        self.run_dir, self.every_min, self.every, self.clock = run_dir, every_min, every, clock
        self.writer = StateWriter()
        self.saved_at = clock()
        self.best_due = False

    def due(self, step: int) -> bool:
        """After optimisation step ``step``: is a checkpoint due?"""
        if self.every and step % self.every == 0:
            return True
        return self.every_min > 0 and self.clock() - self.saved_at >= 60 * self.every_min

    def write(self, state: dict) -> None:
        """``last.pt`` (and ``best.safetensors`` first when due) from a snapshot of ``state`` taken now,
        once the previous write is done (one at a time, at most two copies in memory), in the background."""
        self.writer.wait()
        state = snapshot(state)
        writes = [(save_state, self.run_dir / LAST, state)]
        if self.best_due:  # first: last.pt never names a best epoch whose weights are not on disk
            writes.insert(0, (write_weights, self.run_dir / BEST, state["model"]))
            self.best_due = False
        self.writer.submit(*writes)
        self.saved_at = self.clock()
