"""Loading weights safely: safetensors, or ``torch.load(weights_only=True)`` (refuses arbitrary pickles).

A method may read its authors' own checkpoint files: it registers a ``checkpoint_reader`` with the method
(``register_method(name, description, checkpoint_reader=fn)``); ``fn(obj, path)`` gets the file's
weights-only content and returns a ``MethodCheckpoint`` — our state dict, the settings the file decides
(its architecture, input size, preprocessing) and how a record names it — or None when the file is not
of that kind (then it is read as one of ours).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vpr_bench.errors import CheckpointError


@dataclass
class MethodCheckpoint:
    """A weights file read for one method: our state dict, and what the file decides."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    settings: dict[str, Any] = field(default_factory=dict)  # dotted config values, e.g. "model.backbone"
    description: str = ""  # the record's ``weights`` field

    def __post_init__(self) -> None:
        self.description = self.description or f"checkpoint:{self.path}"


def weights_file(path: str | Path) -> Path:
    """The file behind ``path``: itself, or a run folder's best weights."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.safetensors", "model.safetensors", "best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds no best.safetensors / model.safetensors / best.pt / last.pt")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def read_file(path: str | Path) -> Any:
    """The content of a weights file, read without running code (safetensors or weights-only pickle)."""
    path = weights_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain weights file ({str(exc).splitlines()[0]})"
        ) from None
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None


def read_method_checkpoint(method: str, path: str | Path) -> MethodCheckpoint:
    """``path`` read for ``method``: through the method's own reader when it recognises the file (its
    authors' format), else as a vpr-bench state dict."""
    from vpr_bench.registry import METHODS

    file = weights_file(path)
    content = read_file(file)
    reader = METHODS.get(method).attributes.get("checkpoint_reader") if method in METHODS else None
    found = reader(content, file) if reader is not None else None
    if found is not None:
        return found
    return MethodCheckpoint(Path(path), _state_of(content, file))


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    file = weights_file(path)
    return _state_of(read_file(file), file)


def _state_of(state: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return state


def load_weights(model: nn.Module, path: str | Path | MethodCheckpoint, method: str = "") -> None:
    """Load a file (or an already read ``MethodCheckpoint``) strictly; a mismatch fails in one line naming
    the first missing and unexpected keys."""
    state = path.state_dict if isinstance(path, MethodCheckpoint) else load_state_dict(path)
    where = path.path if isinstance(path, MethodCheckpoint) else path
    fit_state_dict(model, state, where, method)


def fit_state_dict(model: nn.Module, state: dict, where: str | Path, method: str = "") -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:3])})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} of another shape (first: {k} {tuple(state[k].shape)}, "
                f"expected {tuple(expected[k].shape)})"
            )
        name = f"a {method} model" if method else "this model"
        raise CheckpointError(
            f"{where} does not fit {name} ({len(expected)} keys expected): {'; '.join(parts)}; "
            "check --method and the model options"
        )
    model.load_state_dict(state)
