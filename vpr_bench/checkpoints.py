"""Loading weights safely: safetensors, or ``torch.load(weights_only=True)`` (refuses arbitrary pickles).
The numpy values training scripts save beside the weights (CricaVPR's ``recalls``) are not read: they come
back as ``NumpyNotRead`` placeholders, so such a file loads without numpy ever seeing its bytes.

A method may read its authors' own checkpoint files: it registers a ``checkpoint_reader`` with the method
(``register_method(name, description, checkpoint_reader=fn)``); ``fn(obj, path)`` gets the file's
weights-only content and returns a ``MethodCheckpoint`` — our state dict, the settings the file decides
(its architecture, input size, preprocessing) and how a record names it — or None when the file is not
of that kind (then it is read as one of ours).
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vpr_bench.errors import CheckpointError

# a run folder's weights, by preference
WEIGHTS_FILES = ("best.safetensors", "model.safetensors", "best.pt", "last.pt")


@dataclass
class MethodCheckpoint:
    """A weights file read for one method: our state dict, and what the file decides."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    settings: dict[str, Any] = field(default_factory=dict)  # dotted config values, e.g. "model.backbone"
    description: str = ""  # the record's ``weights`` field

    def __post_init__(self) -> None:
        self.description = self.description or f"checkpoint:{self.path}"


def runs_in(folder: Path) -> list[Path]:
    """The run folders (with a config.json) one or two levels below ``folder``
    (``results/<dataset>/<method>``, ``results/<dataset>``), newest first."""
    found = {file.parent for depth in ("*", "*/*") for file in folder.glob(f"{depth}/config.json")}
    return sorted(found, key=lambda run: run.name, reverse=True)  # run ids start with their date


def refuse_folder_of_runs(folder: Path, option: str = "") -> None:
    """A ``CheckpointError`` naming a few of the runs when ``folder`` (given as ``option``) holds runs
    rather than being one (``results/<dataset>/<method>`` where one run was meant)."""
    runs = runs_in(folder)
    if runs:
        shown = " or ".join(str(run) for run in runs[:2]) + (
            f" ({len(runs)} in all)" if len(runs) > 2 else ""
        )
        named = f"{option} {folder}" if option else str(folder)
        raise CheckpointError(f"{named} is a folder of runs, not a run: give one of them, e.g. {shown}")


def weights_file(path: str | Path) -> Path:
    """The file behind ``path``: itself, or a run folder's best weights."""
    path = Path(path)
    if path.is_dir():
        for name in WEIGHTS_FILES:
            if (path / name).is_file():
                return path / name
        refuse_folder_of_runs(path)
        raise CheckpointError(f"{path} holds no {' / '.join(WEIGHTS_FILES)}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


class NumpyNotRead:
    """Stands in for a numpy value of a checkpoint (a training script's ``recalls`` array or ``best_r5``
    scalar beside the state dict): the pickle's calls to numpy's ``_reconstruct``/``scalar``/``dtype``/
    ``ndarray`` land here, so numpy never reads the file's bytes (its ``__setstate__`` trusts its input,
    see ``datasets/lists.py``), and the weights-only load no longer refuses the whole file for them."""

    def __init__(self, *args: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "<numpy value, not read>"


# what a numpy array or scalar pickles as, under numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``)
NUMPY_STAND_INS = [
    (NumpyNotRead, f"{module}.{name}")
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
] + [(NumpyNotRead, "numpy.ndarray"), (NumpyNotRead, "numpy.dtype")]


def read_file(path: str | Path) -> Any:
    """The content of a weights file, read without running code (safetensors or weights-only pickle;
    numpy values beside the tensors are replaced by ``NumpyNotRead``)."""
    path = weights_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        with torch.serialization.safe_globals(NUMPY_STAND_INS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise unreadable(path, exc) from None


def unreadable(path: Path, exc: Exception, option: str = "") -> CheckpointError:
    """The one-line error for the weights file ``path`` (given as ``option``) that a loader failed on with
    ``exc``: what the file is when it is no weights file at all, else why it was refused."""
    named = f"{option} {path}" if option else str(path)
    if (reason := not_weights(path)) is not None:
        return CheckpointError(f"{named} is {reason}")
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc):  # refused (torch, timm)
        blocked = re.search(r"(?:GLOBAL|Unsupported globals:) ([\w.]*\w)", str(exc))
        return CheckpointError(
            f"refusing to load {named}: it holds Python objects, not only tensors"
            + (f" ({blocked.group(1)})" if blocked else "")
            + ", and loading those could run code; save the model's state_dict() instead"
        )
    return CheckpointError(f"cannot read {option or 'checkpoint'} {path}: {str(exc).splitlines()[0]}")


def not_weights(path: Path) -> str | None:
    """What ``path`` is when its first bytes show it cannot be a weights file of its kind (a safetensors
    file by its suffix, else a ``torch.save`` zip archive or pickle) — e.g. an HTML page saved by a failed
    download — said as "not a … file: it is …"; None when it may be one."""
    with path.open("rb") as f:
        head = f.read(1024)
    if path.suffix == ".safetensors":
        kind = "a safetensors file"
        header_length = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
        if head[8:9] == b"{" and 0 < header_length < path.stat().st_size:
            return None
    else:
        kind = "a PyTorch checkpoint"
        if head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip archive; an older pickle
            return None
    return f"not {kind}: {_what_it_is(head)}"


def _what_it_is(head: bytes) -> str:
    lowered = head.lstrip().lower()
    if not head:
        return "it is empty (a failed download or copy?)"
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered:
        return "it is an HTML page (a failed download? download the file again)"
    if lowered.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer (fetch the file itself with `git lfs pull`)"
    if b"\0" in head:
        return "its first bytes are not those of one"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # binary, not a text cut mid-character
            return "its first bytes are not those of one"
        text = head[: exc.start].decode("utf-8")
    line = (text.strip().splitlines() or [""])[0]
    return f"it is a text file starting {line[:40]!r} (a failed download?)"


def read_method_checkpoint(method: str, path: str | Path) -> MethodCheckpoint:
    """``path`` read for ``method``: through the method's own reader when it recognises the file (its
    authors' format), else as a vpr-bench state dict."""
    from vpr_bench.registry import METHODS

    file = weights_file(path)
    content = read_file(file)
    reader = METHODS.get(method).spec.checkpoint_reader if method in METHODS else None
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
