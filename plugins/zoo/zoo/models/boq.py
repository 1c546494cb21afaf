"""``boq``: Bag-of-Queries (A. Ali-bey, B. Chaib-draa, P. Giguère, "BoQ: A Place is Worth a Bag of Learnable
Queries", CVPR 2024), as its official code runs it at evaluation (amaralibey/Bag-of-Queries, commit 1a4965e,
``hubconf.get_trained_boq``; the DINOv2 backbone as facebookresearch/dinov2 b8931f7 runs it).

Network: a backbone feature map (ResNet cut after ``layer3``, or DINOv2 ViT/14 patch tokens without the
final norm) → 3×3 conv to ``channels`` → tokens (B, N, channels) → LayerNorm → ``blocks`` BoQ blocks, each:
a post-norm ReLU transformer encoder layer on the tokens (its output feeds the next block); learnable
queries refined by self-attention (residual + LayerNorm); cross-attention of the queries to the tokens,
LayerNorm. The blocks' query outputs, concatenated (B, blocks·queries, channels), are mixed over the query
axis by a Linear to ``rows`` → (B, channels, rows), flattened channel-major and L2-normalised. Every
attention has ``channels // 64`` heads (HEAD; the release commit 5ecf256 had 8 in the encoder and the
query self-attention, 593ba5b changed them the same day).

The official files (flat state dicts of ``VPRModel``) decide the variant: ``backbone.net.<i>`` (torchvision
ResNet children 0 conv1, 1 bn1, 4–6 layer1–3, mapped onto timm's names) or ``backbone.dino.*`` (timm's
names already; ``mask_token`` dropped); channels, queries, blocks and rows from the shapes; and the input
size (ResNet 384×384, DINOv2 322×322). Aggregator keys, official → ours: ``proj_c`` → ``project``,
``norm_input`` → ``input_norm``, ``boqs`` → ``blocks``, in a block ``self_attn`` → ``query_self_attn``,
``norm_q`` → ``query_norm``, ``norm_out`` → ``output_norm``; ``fc`` → ``query_to_rows``. Verified against
the official code's outputs (tests/data/boq_resnet50, boq_dinov2, see their READMEs).

Training (commit 1a4965ea ``train.py``: ``unfreeze_n_blocks=2`` for either backbone; ``src/backbones.py``):
from ``--backbone`` alone (``zoo.models._trunks``), when the trunk starts from pretrained weights all of it
is frozen but its last 2 blocks — DINOv2's last 2 transformer blocks (its final norm, unused, stays
frozen), or of the ResNet's [conv1, bn1, relu, maxpool, layer1, layer2, layer3] layer2 and layer3. The
projection takes the trunk's channels; any timm CNN (cut after stage 3) or ViT with a class token works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vpr_bench.api import ModelConfig, TrainedParts, option
from zoo.models._dinov2 import TIMM_NAMES, official_dinov2_state
from zoo.models._trunks import chosen_backbone, cnn_trunk, freeze_all_but_last, freeze_vit, is_vit, vit_trunk
from zoo.published import (
    MSLS_CHALLENGE,
    MSLS_VAL,
    NORDLAND_1,
    NORDLAND_10,
    PITTS30K,
    PITTS250K,
    OfficialFile,
    Published,
    register_published,
    reported,
)

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# (bottleneck blocks?, blocks in layer3) → the ResNet a file holds
RESNET_BY_LAYOUT = {
    (False, 2): "resnet18",
    (False, 6): "resnet34",
    (True, 6): "resnet50",
    (True, 23): "resnet101",
    (True, 36): "resnet152",
}
INPUT_SIZES = {"resnet": (384, 384), "dinov2": (322, 322)}  # the README's per-backbone evaluation size
RELEASE = "https://github.com/amaralibey/Bag-of-Queries/releases/download/v1.0/"


@dataclass(frozen=True)
class BoQOptions:
    backbone: str = option(
        "dinov2_vitb14",
        f"{', '.join(TIMM_NAMES)} or {', '.join(RESNETS)} (to layer3) (a file decides it; else --backbone)",
    )
    channels: int = option(384, "channels of the 3×3 projection (descriptor = channels × rows)")
    queries: int = option(64, "learnable queries per block")
    blocks: int = option(2, "BoQ blocks")
    rows: int = option(32, "rows the blocks' query outputs are mixed into")
    unfreeze_n_blocks: int = option(
        2,
        "training: the trunk's last N blocks train when it starts from pretrained weights, the rest stays "
        "frozen (DINOv2: transformer blocks; ResNet to layer3: of conv1, bn1, relu, maxpool, layer1-3)",
        minimum=0,
    )

    def __post_init__(self) -> None:
        if self.backbone not in (*TIMM_NAMES, *RESNETS):
            raise ValueError(f"backbone {self.backbone!r} is not one of {', '.join((*TIMM_NAMES, *RESNETS))}")
        if self.channels % 64:
            raise ValueError(f"channels={self.channels} must be a multiple of 64 (heads = channels // 64)")


class BoQBlock(nn.Module):
    def __init__(self, channels: int, queries: int):
        super().__init__()
        heads = channels // 64
        self.encoder = nn.TransformerEncoderLayer(
            channels, heads, dim_feedforward=4 * channels, dropout=0.0, batch_first=True
        )
        self.queries = nn.Parameter(torch.randn(1, queries, channels))
        self.query_self_attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.query_norm = nn.LayerNorm(channels)
        self.cross_attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.output_norm = nn.LayerNorm(channels)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N, C) tokens → (encoded tokens (B, N, C), outputs (B, Q, C), mean attention (B, Q, N))."""
        tokens = self.encoder(tokens)
        queries = self.queries.expand(len(tokens), -1, -1)
        queries = self.query_norm(
            queries + self.query_self_attn(queries, queries, queries, need_weights=False)[0]
        )
        outputs, attention = self.cross_attn(queries, tokens, tokens)
        return tokens, self.output_norm(outputs), attention


class BoQ(nn.Module):
    """Feature map (B, C_in, h, w) → (B, channels·rows) L2-normalised descriptor."""

    def __init__(self, in_channels: int, channels: int, queries: int, blocks: int, rows: int):
        super().__init__()
        self.project = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.input_norm = nn.LayerNorm(channels)
        self.blocks = nn.ModuleList(BoQBlock(channels, queries) for _ in range(blocks))
        self.query_to_rows = nn.Linear(blocks * queries, rows)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = self.input_norm(self.project(features).flatten(2).transpose(1, 2))  # (B, h·w, C)
        outputs = []
        for block in self.blocks:
            tokens, block_outputs, _ = block(tokens)
            outputs.append(block_outputs)
        rows = self.query_to_rows(torch.cat(outputs, dim=1).transpose(1, 2))  # (B, C, rows)
        return F.normalize(rows.flatten(1), dim=-1)  # index c·rows + r


class BoQNet(nn.Module):
    def __init__(self, backbone: nn.Module, aggregator: BoQ, facts: dict):
        super().__init__()
        self.backbone = backbone
        self.aggregator = aggregator
        self.descriptor_dim: int = aggregator.project.out_channels * aggregator.query_to_rows.out_features
        self.backbone_facts = facts

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # timm's features_only ResNet returns [feature map]; DinoV2 returns (class token, feature map)
        return self.aggregator(self.backbone(images)[-1])


_AGGREGATOR_NAMES = (
    (r"^aggregator\.proj_c\.", "aggregator.project."),
    (r"^aggregator\.norm_input\.", "aggregator.input_norm."),
    (r"^aggregator\.fc\.", "aggregator.query_to_rows."),
    (r"^aggregator\.boqs\.(\d+)\.self_attn\.", r"aggregator.blocks.\1.query_self_attn."),
    (r"^aggregator\.boqs\.(\d+)\.norm_q\.", r"aggregator.blocks.\1.query_norm."),
    (r"^aggregator\.boqs\.(\d+)\.norm_out\.", r"aggregator.blocks.\1.output_norm."),
    (r"^aggregator\.boqs\.", "aggregator.blocks."),
)
_RESNET_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3"}


def _aggregator_key(key: str) -> str:
    for pattern, replacement in _AGGREGATOR_NAMES:
        renamed, count = re.subn(pattern, replacement, key)
        if count:
            return renamed
    return key


def _official_resnet_state(state: dict) -> tuple[dict, str]:
    ours = {}
    for key, value in state.items():
        index, _, rest = key.removeprefix("backbone.net.").partition(".")
        if key.startswith("backbone.net.") and index in _RESNET_CHILDREN:
            ours[f"backbone.{_RESNET_CHILDREN[index]}.{rest}"] = value
    layer3_blocks = len({k.split(".")[3] for k in state if k.startswith("backbone.net.6.")})
    layout = ("backbone.net.4.0.conv3.weight" in state, layer3_blocks)
    if layout not in RESNET_BY_LAYOUT:
        raise KeyError("backbone.net.6.<i> blocks of a ResNet-18/34/50/101/152 layer3")
    return ours, RESNET_BY_LAYOUT[layout]


def convert_official(state: dict) -> tuple[dict, dict]:
    """An official ``VPRModel`` state dict → ours, and the options its keys and shapes decide."""
    if "backbone.net.0.weight" in state:
        ours, backbone = _official_resnet_state(state)
    else:
        ours, backbone = official_dinov2_state(state, "backbone.dino.", "backbone.vit.")
    ours.update({_aggregator_key(k): v for k, v in state.items() if not k.startswith("backbone.")})
    blocks = {k.split(".")[2] for k in state if k.startswith("aggregator.boqs.")}
    options = {
        "backbone": backbone,
        "channels": state["aggregator.proj_c.weight"].shape[0],
        "queries": state["aggregator.boqs.0.queries"].shape[1],
        "blocks": len(blocks),
        "rows": state["aggregator.fc.weight"].shape[0],
    }
    return ours, options


README = "amaralibey/Bag-of-Queries README (f9f30ae)"
ST_LUCIA = ("St Lucia", None)  # the README does not say which St Lucia split
PUBLISHED = Published(
    paper=(
        "A. Ali-bey, B. Chaib-draa, P. Giguère, BoQ: A Place is Worth a Bag of Learnable Queries, CVPR 2024"
    ),
    backbone="DINOv2 ViT-B/14 (12288-d, 322×322) or ResNet-50 to layer3 (16384-d, 384×384): the file decides",
    descriptor_dim=12288,
    input_size=INPUT_SIZES["dinov2"],
    licence="MIT (code and weights; DINOv2 Apache-2.0)",
    files=(
        OfficialFile("dinov2_12288.pth", RELEASE + "dinov2_12288.pth", note="DINOv2 ViT-B/14, 12288-d"),
        OfficialFile(
            "resnet50_16384.pth", RELEASE + "resnet50_16384.pth", note="ResNet-50, 16384-d, 384×384"
        ),
    ),
    figures=reported(
        README,
        "dinov2_12288.pth",
        (*PITTS250K, 96.6, 99.1),
        (*PITTS30K, 93.7, 97.1),
        (*MSLS_VAL, 93.8, 96.8),
        (*NORDLAND_1, 81.3, 92.5),
        (*NORDLAND_10, 90.6, 96.0),
        (*ST_LUCIA, 99.9, 100.0),
        (*MSLS_CHALLENGE, 79.0, 90.3),
    )
    + reported(
        README,
        "resnet50_16384.pth",
        (*PITTS250K, 95.0, 98.5),
        (*PITTS30K, 92.4, 96.5),
        (*MSLS_VAL, 91.2, 95.3),
        (*NORDLAND_1, 70.7, 84.0),
        (*NORDLAND_10, 83.1, 91.0),
        (*ST_LUCIA, 100.0, 100.0),
    ),
    preprocess="tensor-resize-first",
    interpolation="bicubic",
    mark="aggregator.boqs.0.queries",
)


def input_size_of_file(settings: dict) -> dict:
    """The input size of the file's backbone (one ``Published`` holds one): DINOv2 or ResNet."""
    family = "dinov2" if settings["model.options"]["backbone"] in TIMM_NAMES else "resnet"
    return {**settings, "data.image_size": INPUT_SIZES[family]}


@register_published(
    "boq",
    "Bag-of-Queries (Ali-bey et al., CVPR 2024): DINOv2 or ResNet-50 + learnable-query cross-attention",
    PUBLISHED,
    BoQOptions,
    convert_official,
    file_settings=input_size_of_file,
    trained_parts=TrainedParts(
        trains="the trunk's last unfreeze_n_blocks=2 blocks (DINOv2: its last 2 transformer blocks; ResNet "
        "cut after layer3: layer2, layer3) and the BoQ aggregator",
        frozen="the rest of the trunk when it starts from pretrained weights (DINOv2: patch embedding, class "
        "token, position embedding, the earlier blocks, the unused final norm; ResNet: conv1, bn1, layer1); "
        "ResNet layer4 cropped",
        source="amaralibey/Bag-of-Queries 1a4965e: train.py (unfreeze_n_blocks=2; training at 224×224 for "
        "DINOv2, 320×320 for ResNet), src/backbones.py",
    ),
    # the paper's model is DINOv2's; the demo keeps the preset's small ResNet-18 (to layer3) at 48×64
    presets={"paper": {"model.backbone": "dinov2_vitb14"}, "demo": {"data.image_size": (48, 64)}},
)
def boq(cfg: ModelConfig, options: BoQOptions) -> BoQNet:
    name = chosen_backbone(cfg, options)
    if is_vit(name):
        backbone, facts = vit_trunk(name, cfg, final_norm=False, method="boq")
        freeze_vit(backbone, options.unfreeze_n_blocks, facts, train_norm=False)  # its final norm is unused
    else:
        # a ResNet cut after layer3 (crop_last_block=True), torchvision's ImageNet weights as theirs
        backbone, facts = cnn_trunk(name, 3, cfg, "boq")
        freeze_all_but_last(backbone, options.unfreeze_n_blocks, facts)
    aggregator = BoQ(facts["channels"], options.channels, options.queries, options.blocks, options.rows)
    return BoQNet(backbone, aggregator, {k: facts[k] for k in ("weights", "mean", "std")})
