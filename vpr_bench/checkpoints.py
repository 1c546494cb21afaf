"""Loading weights safely: safetensors, or ``torch.load(weights_only=True)`` (refuses arbitrary pickles)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from vpr_bench.errors import CheckpointError


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.is_dir():  # a run folder: its best weights
        for name in ("best.safetensors", "model.safetensors", "best.pt", "last.pt"):
            if (path / name).is_file():
                return load_state_dict(path / name)
        raise CheckpointError(f"{path} holds no best.safetensors / model.safetensors / best.pt / last.pt")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain weights file ({str(exc).splitlines()[0]})"
        ) from None
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return state


def load_weights(model: nn.Module, path: str | Path) -> None:
    state = load_state_dict(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"{path} does not fit this model ({first}); check --method/--backbone"
        ) from None
