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


def fixture_input(height: int, width: int, normalise: bool = True, batch: int = 2) -> torch.Tensor:
    """The fixtures' input, ``torch.rand(batch, 3, H, W)`` from seed 20240401, ImageNet-normalised (the
    batch-dependent models' fixtures draw 4 images; the first two are the others' two)."""
    x = reference_input(height, width, batch)
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


def offline_downloads(monkeypatch, hub_dir: Path) -> list[str]:
    """``--weights official`` without a network: the torch hub cache in ``hub_dir``, every host reachable,
    and a download that writes an empty file and records its URL in the list returned."""
    import io
    import socket

    urls: list[str] = []

    def download(url: str, destination: str, hash_prefix=None, progress: bool = True) -> None:
        urls.append(url)
        Path(destination).write_bytes(b"")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub_dir))
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: io.BytesIO())  # has close()
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return urls


def write_training_checkpoint(state: dict, path: Path) -> Path:
    """``state`` as a training script of the deep-visual-geo-localization lineage saves it (CricaVPR's and
    SuperVLAD's train.py): DataParallel keys under ``model_state_dict``, beside the epoch, an optimizer
    state, numpy ``recalls`` and ``best_r5`` — which a weights-only read must take without numpy."""
    optimizer = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2), "exp_avg_sq": torch.zeros(2)}},
        "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "params": [0]}],
    }
    recalls = np.array([85.0, 93.5, 95.25, 96.5])
    return write_official(
        state, path, wrapper="model_state_dict", prefix="module.", epoch_num=3,
        optimizer_state_dict=optimizer, recalls=recalls, best_r5=recalls[1], not_improved_num=0,
    )  # fmt: skip


def in_batches(
    describe: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, *batches
) -> torch.Tensor:
    """A batch-dependent model's descriptors of ``inputs`` (one row per image) described in the given
    ``batches`` (lists of rows, one forward pass each) by ``describe``, put back in the rows' order."""
    rows = {}
    with torch.inference_mode():
        for batch in batches:
            rows.update(zip(batch, describe(inputs[batch]), strict=True))
    return torch.stack([rows[i] for i in range(len(inputs))])
