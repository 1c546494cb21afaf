"""Training state on disk: written atomically, read with ``weights_only=True``.

``last.pt`` holds everything needed to continue (model, optimiser, scheduler, epoch, position in the
epoch, the current round's mined tuples, the miner's negative cache, RNG states, early-stopping state);
``best.safetensors`` the weights with the best validation R@1.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

from vpr_bench._io import atomic_write_bytes
from vpr_bench.checkpoints import load_state_dict
from vpr_bench.errors import CheckpointError

LAST = "last.pt"
BEST = "best.safetensors"


def save_state(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


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
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, safetensors_bytes(tensors))


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
