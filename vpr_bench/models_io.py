"""A model built from a weights file: the one way every ``--checkpoint``, a frozen teacher and a trained
student are loaded."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vpr_bench.checkpoints import MethodCheckpoint, load_weights, read_method_checkpoint
from vpr_bench.config import ModelConfig, RunConfig, apply_file_settings
from vpr_bench.methods import build_method


@dataclass(frozen=True)
class LoadedWeights:
    """Where a loaded model's weights came from, and what the file decided."""

    path: Path  # the file read
    description: str  # how a record names the weights (its ``weights`` field)
    model: ModelConfig  # the configuration the model was built with
    settings: dict[str, Any] = field(default_factory=dict)  # what the file decides, e.g. "model.backbone"


def load_model(
    config: ModelConfig | RunConfig,
    weights: str | Path | MethodCheckpoint,
    device: torch.device | str = "cpu",
    *,
    file_decides: bool = True,
) -> tuple[nn.Module, LoadedWeights]:
    """The model of ``config`` (a ``ModelConfig``, or a ``RunConfig``'s ``model``) with every weight
    from ``weights`` (no pretrained download), on ``device``, and where its weights came from.

    ``weights``: a weights file or run folder, read for ``config.method`` (through the method's own
    reader when the file is in its authors' format), or a file already read (``MethodCheckpoint``).
    ``file_decides``: the model settings the file decides (its architecture, variant) replace those of
    ``config``; False where ``config`` already holds them (``config.resolve(..., from_file=...)``, whose
    flags may add model options the file does not decide). A file that does not fit the model fails in
    one line naming the first missing and unexpected keys (``CheckpointError``). ``config`` is not
    changed.
    """
    model_cfg = config.model if isinstance(config, RunConfig) else config
    read = weights
    if not isinstance(read, MethodCheckpoint):
        read = read_method_checkpoint(model_cfg.method, weights)
    if file_decides:
        model_cfg = decided_by_file(model_cfg, read.settings)
    model_cfg = dataclasses.replace(model_cfg, pretrained=False)  # every weight comes from the file
    model = build_method(model_cfg)
    load_weights(model, read, model_cfg.method)
    return model.to(device), LoadedWeights(read.path, read.description, model_cfg, dict(read.settings))


def decided_by_file(model_cfg: ModelConfig, settings: dict[str, Any]) -> ModelConfig:
    """A copy of ``model_cfg`` with the model settings a checkpoint file decides (``model.*``)."""
    model_settings = {k: v for k, v in settings.items() if k.startswith("model.")}
    return apply_file_settings(RunConfig(model=copy.deepcopy(model_cfg)), model_settings).model
