"""A torchvision ResNet trunk cut after one of its layers, as several published VPR models use it
(MixVPR and Conv-AP: ``backbone.model.<torchvision name>``), built from timm.

timm's ResNets name their parameters exactly as torchvision's do (``conv1``, ``bn1``, ``layer1.0.conv3``,
``layer2.0.downsample.0`` …), and a ``features_only`` model with ``out_indices=(n,)`` keeps the modules up to
``layer<n>`` only, so an authors' trunk maps onto ours by changing the key prefix. Their files say which
ResNet they hold: the number of blocks in each layer present, and whether the blocks are bottlenecks.
"""

from __future__ import annotations

import torch
from torch import nn

from vpr_bench.api import CheckpointError, create_backbone

# timm name → (blocks in layer1..layer4, bottleneck blocks): torchvision's ResNets
RESNET_BLOCKS: dict[str, tuple[tuple[int, int, int, int], bool]] = {
    "resnet18": ((2, 2, 2, 2), False),
    "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True),
    "resnet101": ((3, 4, 23, 3), True),
    "resnet152": ((3, 8, 36, 3), True),
}


def resnet_trunk(
    name: str, last_layer: int, pretrained: bool = False, pretrained_file: str | None = None
) -> tuple[nn.Module, dict]:
    """timm's ``name`` (a key of ``RESNET_BLOCKS``) from the stem through ``layer<last_layer>``, returning a
    one-element list of (B, C, H/2^(last_layer+1), W/2^(last_layer+1)) maps, and ``create_backbone``'s
    facts. Pretrained weights are torchvision's ImageNet ones (``<name>.tv_in1k``), as the authors used."""
    if name not in RESNET_BLOCKS:
        raise ValueError(f"resnet {name!r} is not one of {', '.join(RESNET_BLOCKS)}")
    if not 1 <= last_layer <= 4:
        raise ValueError(f"last_layer must be 1..4, not {last_layer}")
    return create_backbone(f"{name}.tv_in1k", pretrained, pretrained_file, out_index=last_layer)


def resnet_layout(state: dict[str, torch.Tensor], prefix: str) -> tuple[str, int]:
    """(timm name, last layer) of the torchvision ResNet trunk whose keys start with ``prefix``; a
    KeyError when it has no ``layer1`` (``zoo.published.read_official`` names the key)."""
    blocks = []
    for layer in range(1, 5):
        start = f"{prefix}layer{layer}."
        numbers = (k[len(start) :].split(".")[0] for k in state if k.startswith(start))
        indices = {int(n) for n in numbers if n.isdigit()}
        if not indices:
            break
        blocks.append(max(indices) + 1)
    if not blocks:
        raise KeyError(f"{prefix}layer1.0.conv1.weight")
    bottleneck = f"{prefix}layer1.0.conv3.weight" in state
    for name, (counts, is_bottleneck) in RESNET_BLOCKS.items():
        if counts[: len(blocks)] == tuple(blocks) and is_bottleneck == bottleneck:
            return name, len(blocks)
    kind = "bottleneck" if bottleneck else "basic"
    raise CheckpointError(
        f"the ResNet under {prefix!r} has {tuple(blocks)} {kind} blocks per layer, which is none of "
        f"torchvision's {', '.join(RESNET_BLOCKS)}"
    )


def renamed_trunk(state: dict[str, torch.Tensor], prefix: str, ours: str) -> dict[str, torch.Tensor]:
    """The trunk's entries under ``prefix`` renamed to ``ours``; BatchNorm's ``num_batches_tracked`` (never
    used at evaluation) added where a file leaves it out, as torch's own loader allows."""
    trunk = {ours + k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    for key in [k for k in trunk if k.endswith(".running_mean")]:
        counter = key[: -len("running_mean")] + "num_batches_tracked"
        trunk.setdefault(counter, torch.zeros((), dtype=torch.int64))
    return trunk
