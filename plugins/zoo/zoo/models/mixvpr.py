"""``mixvpr``: a ResNet cut after layer3, feature mixing over each channel's flattened map, and two
projections, as its authors publish it.

Paper: A. Ali-bey, B. Chaib-draa, P. Giguère, "MixVPR: Feature Mixing for Visual Place Recognition",
WACV 2023, pp. 2998–3007 (arXiv:2303.02190). Follows amaralibey/MixVPR at commit
4043915cef24818003ece1a8112bc8a24e69abe0 (``main.py``'s ``VPRModel``, ``models/backbones/resnet.py``,
``models/aggregators/mixvpr.py``, ``demo.py``). Written from the facts in
the reference fixture (tests/data/mixvpr); no code copied (the repository has no licence).

What the authors' network computes at evaluation (320×320, ImageNet normalisation):
- torchvision's ResNet-50 from conv1 through layer3: (B, 1024, 20, 20), stride 16;
- each channel's map flattened, (B, 1024, 400), then ``mix_depth`` mixers ``x + W₂·ReLU(W₁·LayerNorm(x))``
  acting on the 400 cells (W₁: 400 → 400·mlp_ratio, W₂ back);
- ``channel_proj`` Linear(1024 → out_channels) across the channels, ``row_proj`` Linear(400 → out_rows)
  across the cells: (B, out_channels, out_rows), flattened channel-major (index c·out_rows + r), then L2.

Their files (``resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt``…) are plain state dicts of ``VPRModel``:
``backbone.model.<torchvision name>`` and ``aggregator.mix.<i>.mix.{0 LayerNorm, 1 W₁, 3 W₂}``,
``aggregator.channel_proj``, ``aggregator.row_proj``. Ours name the trunk as timm does (torchvision's names,
so ``--pretrained`` works) and the mixers by role. The file decides the ResNet and where it is cut, the
number of cells, the mixers' depth and width, out_channels and out_rows.

Training (``main.py``: ``layers_to_freeze=2``, ``layers_to_crop=[4]``, in_h = in_w = 20 at 320×320): from
``--backbone`` alone (``zoo.models._trunks``), conv1, bn1, layer1 and layer2 frozen when the trunk starts
from pretrained weights; channel_proj takes the trunk's channels; map_cells must equal the map's h·w.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vpr_bench.api import CheckpointError, ConfigError, ModelConfig, TrainedParts, option
from zoo.models._resnet import RESNET_BLOCKS, renamed_trunk, resnet_layout
from zoo.models._trunks import chosen_backbone, cnn_trunk, freeze_stages
from zoo.published import MSLS_VAL, PITTS30K, PITTS250K, OfficialFile, Published, register_published, reported

TRUNK = "backbone.model."  # the authors' prefix of the torchvision ResNet
MARK = "aggregator.row_proj.weight"
MIXER_PARTS = {"0": "norm", "1": "expand", "3": "reduce"}  # the authors' Sequential index → ours (2: ReLU)

MIXVPR = Published(
    paper="Ali-bey, Chaib-draa, Giguère, MixVPR: Feature Mixing for Visual Place Recognition, WACV 2023",
    backbone="resnet50 (torchvision) cut after layer3; the file decides",
    descriptor_dim=4096,
    input_size=(320, 320),  # README: "images must be resized to 320x320"
    licence="none: amaralibey/MixVPR has no licence file (code and weights; no licence granted)",
    files=(
        OfficialFile(
            "resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt",
            "https://drive.google.com/file/d/1vuz3PvnR7vxnDDLQrdHJaOA04SQrtk5L/view",
            note="4096-d: out_channels 1024, out_rows 4 (the README's and demo.py's file)",
        ),
        OfficialFile(
            "resnet50_MixVPR_512_channels(256)_rows(2).ckpt",
            "https://drive.google.com/file/d/1khiTUNzZhfV2UUupZoIsPIbsMRBYVDqj/view",
            note="512-d; the README gives only the size: name and 256×2 from gmberton/VPR-methods-evaluation",
        ),
        OfficialFile(
            "resnet50_MixVPR_128_channels(64)_rows(2).ckpt",
            "https://drive.google.com/file/d/1DQnefjk1hVICOEYPwE4-CZAZOvi1NSJz/view",
            note="128-d; the README gives only the size: name and 64×2 from gmberton/VPR-methods-evaluation",
        ),
    ),
    figures=reported(
        "amaralibey/MixVPR README",
        "resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt",
        (*PITTS250K, 94.3, 98.2),
        (*PITTS30K, 91.6, 95.5),
        (*MSLS_VAL, 88.2, 93.1),
    ),
    # The validation datasets that produced the paper's figures resize with T.Resize((320, 320)) on the
    # PIL image (bilinear: their BICUBIC line is commented out); demo.py resizes bicubic.
    preprocess="resize-first",
    interpolation="bilinear",
    mark=MARK,
    extra={"code": "amaralibey/MixVPR 4043915"},
)


TRAINED_PARTS = TrainedParts(
    trains="layer3 of the ResNet trunk (the last stage kept), the feature mixers, channel_proj and row_proj",
    frozen="conv1, bn1, layer1, layer2 (layers_to_freeze=2) when the trunk starts from pretrained weights "
    "(their BatchNorm statistics still update, as in the official code); layer4 cropped (last_layer=3)",
    source="amaralibey/MixVPR 4043915: main.py (layers_to_freeze=2, layers_to_crop=[4], in_h=in_w=20 at "
    "320×320), models/backbones/resnet.py",
)


@dataclass(frozen=True)
class MixVPROptions:
    backbone: str = option(
        "resnet50", "torchvision ResNet trunk: resnet18/34/50/101/152 (a file decides it; else --backbone)"
    )
    last_layer: int = option(3, "the trunk ends after layer<N> (official 3: stride 16; a file decides it)")
    map_cells: int = option(
        400, "cells h·w of the trunk's map the mixers take (20×20 at 320×320; a file decides)"
    )
    mix_depth: int = option(4, "number of feature mixers (a file decides it)")
    mlp_ratio: int = option(1, "a mixer's hidden width over map_cells (a file decides it)")
    out_channels: int = option(1024, "channel_proj's output channels (a file decides it)")
    out_rows: int = option(
        4, "row_proj's output rows; descriptor = out_channels·out_rows (a file decides it)"
    )
    layers_to_freeze: int = option(
        2,
        "training: the trunk's stages 0..N stay frozen when it starts from pretrained weights (ResNet 0: "
        "conv1, bn1; 1: +layer1; 2: +layer2, the paper's); -1: none",
        minimum=-1,
    )

    def __post_init__(self):
        if self.backbone not in RESNET_BLOCKS:
            raise ValueError(f"backbone {self.backbone!r} is not one of {', '.join(RESNET_BLOCKS)}")
        if not 1 <= self.last_layer <= 4:
            raise ValueError(f"last_layer must be 1..4, not {self.last_layer}")
        for name in ("map_cells", "mlp_ratio", "out_channels", "out_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1")


class FeatureMixer(nn.Module):
    """One mixer on (B, C, N) flattened maps: x + reduce(ReLU(expand(LayerNorm(x)))), over the N cells."""

    def __init__(self, cells: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(cells)
        self.expand = nn.Linear(cells, hidden)
        self.reduce = nn.Linear(hidden, cells)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return maps + self.reduce(F.relu(self.expand(self.norm(maps))))


class MixVPRNet(nn.Module):
    """(B, 3, H, W) → (B, out_channels·out_rows) L2-normalised: trunk → mixers → channel, row projections."""

    def __init__(self, backbone: nn.Module, channels: int, reduction: int, options: MixVPROptions):
        super().__init__()
        self.backbone = backbone
        self.mixers = nn.Sequential(
            *(
                FeatureMixer(options.map_cells, options.map_cells * options.mlp_ratio)
                for _ in range(options.mix_depth)
            )
        )
        self.channel_proj = nn.Linear(channels, options.out_channels)
        self.row_proj = nn.Linear(options.map_cells, options.out_rows)
        self.map_cells = options.map_cells
        self.reduction = reduction
        self.descriptor_dim = options.out_channels * options.out_rows

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)[-1]  # (B, C, h, w)

    def rows(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) trunk maps → (B, out_channels, out_rows), before flattening and L2."""
        _, _, height, width = features.shape
        if height * width != self.map_cells:
            side = math.isqrt(self.map_cells) * self.reduction
            raise ConfigError(
                f"mixvpr's mixers take {self.map_cells}-cell feature maps; this input gives "
                f"{height}×{width}: evaluate at the size the file was trained for (official: --image-size "
                f"{side}x{side}), or build it for this size with --model-option map_cells={height * width}"
            )
        mixed = self.mixers(features.flatten(2))  # (B, C, h·w)
        projected = self.channel_proj(mixed.transpose(1, 2))  # (B, h·w, out_channels)
        return self.row_proj(projected.transpose(1, 2))  # (B, out_channels, out_rows)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.rows(self.features(images)).flatten(1), dim=-1)  # index c·out_rows + r


def convert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """The authors' ``VPRModel`` state dict → ours, and the options it decides. Keys this map does not know
    pass through, so loading names them as unexpected."""
    backbone, last_layer = resnet_layout(state, TRUNK)
    cells = state["aggregator.row_proj.weight"].shape[1]
    depth = len({k.split(".")[2] for k in state if k.startswith("aggregator.mix.")})
    hidden = state["aggregator.mix.0.mix.1.weight"].shape[0]
    if hidden % cells:
        raise CheckpointError(
            f"a MixVPR file whose mixers are {hidden} wide: not a multiple of its {cells} cells"
        )
    ours = renamed_trunk(state, TRUNK, "backbone.")
    taken = set()
    for index in range(depth):
        for theirs, role in MIXER_PARTS.items():
            for param in ("weight", "bias"):
                key = f"aggregator.mix.{index}.mix.{theirs}.{param}"
                ours[f"mixers.{index}.{role}.{param}"] = state[key]
                taken.add(key)
    for projection in ("channel_proj", "row_proj"):
        for param in ("weight", "bias"):
            ours[f"{projection}.{param}"] = state[f"aggregator.{projection}.{param}"]
            taken.add(f"aggregator.{projection}.{param}")
    ours.update({k: v for k, v in state.items() if k not in taken and not k.startswith(TRUNK)})
    options = {
        "backbone": backbone,
        "last_layer": last_layer,
        "map_cells": int(cells),
        "mix_depth": depth,
        "mlp_ratio": int(hidden // cells),
        "out_channels": int(state["aggregator.channel_proj.weight"].shape[0]),
        "out_rows": int(state["aggregator.row_proj.weight"].shape[0]),
    }
    return ours, options


@register_published(
    "mixvpr",
    "MixVPR: ResNet-50 to layer3 + feature mixers + channel/row projections (the authors' files decide size)",
    MIXVPR,
    MixVPROptions,
    convert,
    trained_parts=TRAINED_PARTS,
    # a small demo: ResNet-18 to layer3 at 48×64 gives 3×4 maps (cells follow the input: map_cells)
    presets={"demo": {"data.image_size": (48, 64), "model.options": {"map_cells": 12}}},
)
def mixvpr(cfg: ModelConfig, options: MixVPROptions) -> MixVPRNet:
    name = chosen_backbone(cfg, options)
    backbone, facts = cnn_trunk(name, options.last_layer, cfg, "mixvpr")
    freeze_stages(backbone, options.layers_to_freeze, facts)
    model = MixVPRNet(backbone, facts["channels"], facts["reduction"], options)
    model.backbone_facts = {k: facts[k] for k in ("weights", "mean", "std")}
    return model
