"""Proving a published model right: rebuild the official state dict from its key list by the fixtures'
recipe (shared/data/reference_models/README.md, with each model's adjustments), write it in the official
file layout, load it the way a user's ``--checkpoint`` is loaded, run the fixture's input, and compare the
descriptor and the intermediates, each relative to its own largest value."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vpr_bench.api import load_model, read_method_checkpoint
from vpr_bench.api import resolve_config as resolve
from vpr_bench.testing import recipe_tensor, reference_input, relative_error

DATA = Path(__file__).parent / "data"
IMAGENET = (
    torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
    torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
)


def keys(fixture: str, name: str = "keys.json") -> list[tuple[str, list[int], str]]:
    return [tuple(k) for k in json.loads((DATA / fixture / name).read_text())]


def reference(fixture: str, name: str = "reference_small.npz") -> dict[str, np.ndarray]:
    with np.load(DATA / fixture / name) as npz:
        return {k: npz[k] for k in npz.files}


def official_state(
    key_list,
    adjust: dict[str, float] | None = None,
    change: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The recipe's tensor for every key, times ``adjust[key]`` (a fixture's per-key factor), then
    ``change(key, tensor)`` for a fixture's stated change."""
    state = {}
    for key, shape, dtype in key_list:
        value = recipe_tensor(key, shape, dtype)
        if adjust and key in adjust:
            value = value * adjust[key]
        if change is not None:
            value = change(key, value)
        state[key] = value
    return state


def write_official(state: dict, path: Path, wrapper: str | None = None, prefix: str = "", **extra) -> Path:
    """``torch.save`` in an official layout: flat, or under ``wrapper`` (e.g. "state_dict"), keys prefixed
    with ``prefix`` (e.g. "module."), other top-level entries ``extra`` (e.g. epoch)."""
    state = {prefix + k: v for k, v in state.items()}
    torch.save({wrapper: state, **extra} if wrapper else state, path)
    return path


def load_as_user(method: str, path: Path, **overrides):
    """What ``vpr-bench eval --method METHOD --checkpoint PATH`` does before reading the dataset:
    (model in eval mode, the MethodCheckpoint read, the resolved RunConfig)."""
    read = read_method_checkpoint(method, path)
    cfg = resolve("paper", {"model.method": method, **overrides}, read.settings)
    return load_model(cfg, read, file_decides=False)[0].eval(), read, cfg


def fixture_input(height: int, width: int, normalise: bool = True) -> torch.Tensor:
    """The fixtures' input, ``torch.rand(2, 3, H, W)`` from seed 20240401, ImageNet-normalised."""
    x = reference_input(height, width)
    return (x - IMAGENET[0]) / IMAGENET[1] if normalise else x


def errors(found: dict[str, np.ndarray | torch.Tensor], expected: dict[str, np.ndarray]) -> dict[str, float]:
    """Each array's max deviation relative to its own largest reference value."""
    return {
        k: relative_error(v.detach().numpy() if isinstance(v, torch.Tensor) else v, expected[k])
        for k, v in found.items()
    }


def load_layout(method: str, state: dict, path: Path, drop_counters: bool = False, **layout):
    """``state`` written in another official layout (``write_official``'s wrapper/prefix/extra; without
    BatchNorm's ``num_batches_tracked`` when ``drop_counters``) and loaded as a user does: the model."""
    if drop_counters:
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    return load_as_user(method, write_official(state, path, **layout))[0]


def same_weights(model: torch.nn.Module, other: torch.nn.Module) -> bool:
    expected = other.state_dict()
    return all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())


def assert_a_foreign_file_fails_in_one_line(method: str, tmp_path: Path, first_missing: str) -> None:
    """A timm ResNet-18 state dict given as ``method``'s file: one line naming the model and the first
    missing and unexpected keys."""
    import pytest
    from timm import create_model

    from vpr_bench.api import CheckpointError

    another_model = write_official(create_model("resnet18").state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(CheckpointError) as failure:
        load_as_user(method, another_model)
    message = str(failure.value)
    assert "\n" not in message and f"a {method} model" in message
    assert f"missing (first: {first_missing}" in message and "unexpected (first: conv1.weight" in message
