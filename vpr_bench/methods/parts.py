"""Which parts of a network train: the modules of a timm trunk up to a feature stage (what a paper freezes),
and the summary a trained run's record keeps (``training.parts``).

A method freezes a part the way the field's training code does, by ``requires_grad_(False)`` on its
parameters when it builds the network; the optimiser takes only the parameters that still require a
gradient (``vpr_bench.training.optim``). BatchNorm layers of a frozen part keep their training mode, so
their running statistics still follow the training images, as in MixVPR's, GSV-Cities' and BoQ's code.
"""

from __future__ import annotations

import re

from torch import nn

from vpr_bench.errors import ConfigError


def leading_stages(trunk: nn.Module, through: int) -> list[nn.Module]:
    """The modules of a timm ``features_only`` trunk from its input up to and including feature stage
    ``through`` (ResNet: 0 = conv1, bn1 (to act1); 1 = … layer1; 2 = … layer2), as MixVPR's and GSV-Cities'
    ``layers_to_freeze`` counts them; none for ``through`` = -1. A stage inside a container (``blocks.1``)
    takes the container's earlier children with it."""
    if through < 0:
        return []
    info = getattr(trunk, "feature_info", None)
    if info is None or through >= len(info):
        stages = len(info) if info is not None else 0
        raise ConfigError(
            f"cannot freeze through feature stage {through}: this backbone has {stages} feature stages"
        )
    stage_module = info.module_name(through)
    flat = stage_module.replace(".", "_")  # timm's name for it where it flattened the containers
    path = [flat] if flat in dict(trunk.named_children()) else stage_module.split(".")
    return _modules_through(trunk, path, through)


def _modules_through(parent: nn.Module, path: list[str], stage: int) -> list[nn.Module]:
    children = list(parent.named_children())
    names = [name for name, _ in children]
    if path[0] not in names:
        raise ConfigError(
            f"cannot freeze through feature stage {stage}: the backbone keeps stages up to "
            f"{names[-1] if names else 'none'}, not {'.'.join(path)}"
        )
    index = names.index(path[0])
    before = [module for _, module in children[:index]]
    if len(path) == 1:
        return [*before, children[index][1]]
    return [*before, *_modules_through(children[index][1], path[1:], stage)]


def trainable_parts(model: nn.Module) -> dict:
    """The record's account of what trains: the largest parts (module or parameter names) whose parameters
    all train or all stay frozen, numbered siblings merged (``backbone.vit.blocks.0-7``), and the counts."""
    parts = [part for name, child in model.named_children() for part in _uniform_parts(child, name)]
    parts += [(name, p.requires_grad) for name, p in model.named_parameters(recurse=False)]
    trained = [p.numel() for p in model.parameters() if p.requires_grad]
    frozen = [p.numel() for p in model.parameters() if not p.requires_grad]
    return {
        "trained": _merge_numbered([name for name, trains in parts if trains]),
        "frozen": _merge_numbered([name for name, trains in parts if not trains]),
        "trained_parameters": sum(trained),
        "frozen_parameters": sum(frozen),
    }


def _uniform_parts(module: nn.Module, name: str) -> list[tuple[str, bool]]:
    states = {p.requires_grad for p in module.parameters()}
    if len(states) <= 1:
        return [(name, states.pop())] if states else []
    parts = [(f"{name}.{key}", p.requires_grad) for key, p in module.named_parameters(recurse=False)]
    for key, child in module.named_children():
        parts += _uniform_parts(child, f"{name}.{key}")
    return parts


def _merge_numbered(names: list[str]) -> list[str]:
    """``a.blocks.0``, ``a.blocks.1``, ``a.blocks.2`` → ``a.blocks.0-2`` (consecutive indices only)."""
    merged: list[list] = []  # [stem, first, last] or [name]
    for name in names:
        match = re.fullmatch(r"(.*\.)(\d+)", name)
        if match and merged and len(merged[-1]) == 3:
            stem, first, last = merged[-1]
            if stem == match[1] and int(match[2]) == last + 1:
                merged[-1][2] = last + 1
                continue
        merged.append([match[1], int(match[2]), int(match[2])] if match else [name])
    return [
        item[0] if len(item) == 1 else f"{item[0]}{item[1]}" + (f"-{item[2]}" if item[2] > item[1] else "")
        for item in merged
    ]
