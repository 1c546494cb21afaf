"""``convap``: a full ResNet, a 1×1 convolution reducing its channels, and average pooling to an s1×s2 grid,
as its authors publish it with GSV-Cities.

Paper: A. Ali-bey, B. Chaib-draa, P. Giguère, "GSV-Cities: Toward Appropriate Supervised Visual Place
Recognition", Neurocomputing 513 (2022) 194–203 (arXiv:2210.10239). Follows amaralibey/gsv-cities at commit
77ffffc23115e5ba966e108895343693ec49cbb2 (``main.py``'s ``VPRModel``, ``models/backbones/resnet.py``,
``models/aggregators/convap.py``, ``notebooks/evaluate_model.ipynb``). Written from the facts in
the reference fixture (tests/data/convap); no code copied (the repository has no licence).

What the authors' network computes at evaluation (320×320, ImageNet normalisation):
- torchvision's ResNet-50 from conv1 through layer4: (B, 2048, 10, 10), stride 32;
- ``channel_pool`` Conv2d(2048 → C, 1×1, with bias), adaptive average pooling to s1×s2 (2×2), flattened
  channel-major (index c·s1·s2 + i·s2 + j), then L2: a 4·C-d descriptor.

Their files (``resnet50_ConvAP_512_2x2.ckpt``…) are plain state dicts of ``VPRModel``:
``backbone.model.<torchvision name>`` and ``aggregator.channel_pool.{weight,bias}``. Ours name the trunk as
timm does (torchvision's names, so ``--pretrained`` works). The file decides the ResNet and where it is cut
and C; the pooling grid holds no weights, so a state dict cannot tell it: every released file is 2×2 (their
names say so), the default here.

Training (``main.py``: ``layers_to_freeze=2``, ``layers_to_crop=[]``, ConvAP 2×2 at 320×320): from
``--backbone`` alone (``zoo.models._trunks``), conv1, bn1, layer1 and layer2 frozen when the trunk starts
from pretrained weights; channel_pool takes the trunk's channels; any input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vpr_bench.api import ModelConfig, TrainedParts, option
from zoo.models._resnet import RESNET_BLOCKS, renamed_trunk, resnet_layout
from zoo.models._trunks import chosen_backbone, cnn_trunk, freeze_stages
from zoo.published import (
    MSLS_VAL,
    NORDLAND_1,
    PITTS30K,
    PITTS250K,
    OfficialFile,
    Published,
    register_published,
    reported,
    rows,
)

TRUNK = "backbone.model."  # the authors' prefix of the torchvision ResNet
MARK = "aggregator.channel_pool.weight"
FOLDER = "https://drive.google.com/drive/folders/1VYPw9uGD11NgiGFgfWueLt3noJYOIuhL"
THIRD_PARTY_NAME = "name from gmberton/VPR-methods-evaluation (same Drive folder); not in the official repo"

# the README's table, per descriptor size (C×2×2): Pitts250k, Pitts30k, MSLS val, Nordland R@1 / R@5
NORDLAND = ("Nordland (GSV-Cities' lists: 2,760 queries, ±1 frame)", NORDLAND_1[1])
README_FIGURES = {
    "resnet50_ConvAP_128_2x2.ckpt": ((90.7, 96.6), (89.1, 94.6), (82.6, 90.0), (36.3, 53.1)),
    "resnet50_ConvAP_512_2x2.ckpt": ((92.3, 97.5), (90.6, 95.1), (83.4, 90.3), (40.3, 56.6)),
    "resnet50_ConvAP_1024_2x2.ckpt": ((92.5, 97.7), (90.5, 95.3), (83.5, 89.7), (42.6, 59.8)),
    "resnet50_ConvAP_2048_2x2.ckpt": ((92.8, 97.7), (90.5, 95.2), (83.1, 90.3), (42.7, 58.8)),
}
CONVAP = Published(
    paper=(
        "Ali-bey, Chaib-draa, Giguère, GSV-Cities: Toward Appropriate Supervised Visual Place Recognition, "
        "Neurocomputing 2022"
    ),
    backbone="resnet50 (torchvision) through layer4; the file decides",
    descriptor_dim=2048,
    input_size=(320, 320),  # trained and evaluated at 320×320 (any size runs)
    licence="none: amaralibey/gsv-cities has no licence file (code and weights; no licence granted)",
    files=(
        OfficialFile(
            "resnet50_ConvAP_512_2x2.ckpt", FOLDER, note="2048-d, C=512 (the evaluation notebook's)"
        ),
        OfficialFile(
            "resnet50_ConvAP_1024_2x2.ckpt", FOLDER, note="4096-d, C=1024 (the README's load snippet)"
        ),
        OfficialFile("resnet50_ConvAP_2048_2x2.ckpt", FOLDER, note="8192-d, C=2048; " + THIRD_PARTY_NAME),
        OfficialFile("resnet50_ConvAP_128_2x2.ckpt", FOLDER, note="512-d, C=128; " + THIRD_PARTY_NAME),
    ),
    figures=tuple(
        figure
        for file, recalls in README_FIGURES.items()
        for figure in reported(
            "amaralibey/gsv-cities README",
            file,
            *rows((PITTS250K, PITTS30K, MSLS_VAL, NORDLAND), recalls),
        )
    ),
    # the notebook's input_transform: T.Resize((320, 320), BILINEAR) on the PIL image → ToTensor → Normalize
    preprocess="resize-first",
    interpolation="bilinear",
    mark=MARK,
    extra={"code": "amaralibey/gsv-cities 77ffffc"},
)


@dataclass(frozen=True)
class ConvAPOptions:
    backbone: str = option(
        "resnet50", "torchvision ResNet trunk: resnet18/34/50/101/152 (a file decides it; else --backbone)"
    )
    last_layer: int = option(4, "the trunk ends after layer<N> (official 4: stride 32; a file decides it)")
    out_channels: int = option(512, "channels C of the 1×1 convolution (a file decides it)")
    s1: int = option(2, "rows of the average-pooling grid (released files: 2)")
    s2: int = option(2, "columns of the average-pooling grid (released files: 2); descriptor = C·s1·s2")
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
        for name in ("out_channels", "s1", "s2"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1")


class ConvAPNet(nn.Module):
    """(B, 3, H, W) → (B, C·s1·s2) L2-normalised: trunk → 1×1 conv → average pooling to s1×s2 → flatten."""

    def __init__(self, backbone: nn.Module, channels: int, options: ConvAPOptions):
        super().__init__()
        self.backbone = backbone
        self.channel_pool = nn.Conv2d(channels, options.out_channels, kernel_size=1)
        self.grid = (options.s1, options.s2)
        self.descriptor_dim = options.out_channels * options.s1 * options.s2

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)[-1]  # (B, channels, h, w)

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        """(B, channels, h, w) → (B, C, s1, s2), before flattening and L2."""
        return F.adaptive_avg_pool2d(self.channel_pool(features), self.grid)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.pooled(self.features(images)).flatten(1), dim=1)  # index c·s1·s2 + i·s2 + j


def convert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """The authors' ``VPRModel`` state dict → ours, and the options it decides. Keys this map does not know
    pass through, so loading names them as unexpected."""
    backbone, last_layer = resnet_layout(state, TRUNK)
    weight = state["aggregator.channel_pool.weight"]  # (C, channels, 1, 1)
    ours = renamed_trunk(state, TRUNK, "backbone.")
    ours["channel_pool.weight"] = weight
    ours["channel_pool.bias"] = state["aggregator.channel_pool.bias"]
    taken = {"aggregator.channel_pool.weight", "aggregator.channel_pool.bias"}
    ours.update({k: v for k, v in state.items() if k not in taken and not k.startswith(TRUNK)})
    return ours, {"backbone": backbone, "last_layer": last_layer, "out_channels": int(weight.shape[0])}


@register_published(
    "convap",
    "Conv-AP (GSV-Cities): ResNet-50 + 1×1 conv + 2×2 average pooling (the authors' files decide the size)",
    CONVAP,
    ConvAPOptions,
    convert,
    trained_parts=TrainedParts(
        trains="layer3 and layer4 of the ResNet trunk and the 1×1 channel_pool convolution",
        frozen="conv1, bn1, layer1, layer2 (layers_to_freeze=2) when the trunk starts from pretrained "
        "weights (their BatchNorm statistics still update, as in the official code); nothing cropped "
        "(last_layer=4)",
        source="amaralibey/gsv-cities 77ffffc: main.py (layers_to_freeze=2, layers_to_crop=[], ConvAP "
        "2×2, 320×320), models/backbones/resnet.py; amaralibey/MixVPR 4043915 models/aggregators/convap.py",
    ),
    presets={"demo": {"data.image_size": (48, 64)}},  # a small demo: ResNet-18 gives 2×2 maps
)
def convap(cfg: ModelConfig, options: ConvAPOptions) -> ConvAPNet:
    backbone, facts = cnn_trunk(chosen_backbone(cfg, options), options.last_layer, cfg, "convap")
    freeze_stages(backbone, options.layers_to_freeze, facts)
    model = ConvAPNet(backbone, facts["channels"], options)
    model.backbone_facts = {k: facts[k] for k in ("weights", "mean", "std")}
    return model
