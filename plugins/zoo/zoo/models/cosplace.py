"""``cosplace`` and ``eigenplaces``: a CNN backbone, channel L2-norm, GeM, a linear layer and L2, as their
authors publish them.

Papers: Berton, Masone, Caputo, "Rethinking Visual Geo-localization for Large-Scale Applications", CVPR 2022
(arXiv:2204.02287); Berton, Trivigno, Caputo, Masone, "EigenPlaces: Training Viewpoint Robust Models for
Visual Place Recognition", ICCV 2023. Follows gmberton/CosPlace at commit
33ce8d0d2f35a875887b2ef7f00b2dde6cc38dd3 (``cosplace_model/cosplace_network.py``,
``cosplace_model/layers.py``, the flow of ``eval.py``/``test.py``/``hubconf.py``); EigenPlaces
(gmberton/EigenPlaces a2969f7) trains the same network with the same key names. Written from the facts in
the reference fixtures (tests/data/cosplace_*), no code copied.

What the authors' network computes at evaluation (each image at its own size, ImageNet normalisation):
- backbone: torchvision's ResNet-18/50/101/152 up to layer4 (stride 32; 512 or 2048 channels), or VGG16's
  ``features`` without its last ReLU and max-pool (conv5_3's raw output, stride 16, 512 channels);
- L2 normalisation over the channels at every position, GeM with the file's learnable p (eps 1e-6, the
  power mean over the whole map), a Linear(C, D) and a final L2 normalisation.

Their files are plain state dicts of that network (no wrapper, no ``module.`` prefix): ``backbone.<i>.*``
indexes the children of the cut backbone (ResNet: 0 conv1, 1 bn1, 4…7 layer1…layer4; VGG16: the indices of
``features``), ``aggregation.1.p`` (1,) is GeM's p, ``aggregation.3.{weight,bias}`` the Linear. Ours are
timm's (``backbone.conv1``, ``backbone.layer1``…; timm's vgg16 keeps torchvision's indices), whose
``--pretrained`` weights are torchvision's ImageNet ones, the authors' starting point. The file decides the
backbone (VGG16's convolutions have biases; a ResNet by its blocks per layer and whether they are
bottlenecks) and the descriptor size (the Linear's rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vpr_bench.api import CheckpointError, GeM, L2Norm, ModelConfig, create_timm_model, normalisation, option
from zoo.models._resnet import resnet_layout, resnet_trunk
from zoo.published import (
    MSLS_VAL,
    PITTS30K,
    PITTS250K,
    TOKYO247,
    OfficialFile,
    Published,
    register_published,
    reported,
    rows,
)

# channels of each backbone's last feature map (timm names)
BACKBONE_CHANNELS = {"resnet18": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048, "vgg16": 512}
# the authors' children of a cut torchvision ResNet → timm's module names (2 relu, 3 maxpool: no weights)
RESNET_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
VGG16_CUT = 29  # features[:29]: conv1_1 … conv5_3 without its ReLU (28) and the last max-pool (30)
GEM_EPS = 1e-6
RELEASE = "https://github.com/gmberton/CosPlace/releases/download/v1.0/"
MARK = "aggregation.1.p"  # GeM's p under the authors' Sequential index; ours is gem.p

COSPLACE = Published(
    paper=(
        "Berton, Masone, Caputo, Rethinking Visual Geo-localization for Large-Scale Applications, CVPR 2022"
    ),
    backbone="resnet50 (the file decides: resnet18/50/101/152 or vgg16)",
    descriptor_dim=2048,
    input_size=None,  # test_dataset.py: no resize unless --resize_test_imgs (default off)
    licence="MIT (gmberton/CosPlace LICENSE, Copyright (c) 2022 Berton, Masone, Caputo)",
    files=(
        OfficialFile(
            "ResNet50_2048_cosplace.pth",
            RELEASE + "ResNet50_2048_cosplace.pth",
            note="ResNet-50, 2048-d (torch.hub); also on Google Drive: "
            "https://drive.google.com/file/d/1yNzxsMg34KO04UJ49ncANdCIWlB3aUGA/view?usp=sharing",
        ),
        OfficialFile(
            "ResNet18_512_cosplace.pth",
            RELEASE + "ResNet18_512_cosplace.pth",
            note="ResNet-18, 512-d (torch.hub); also on Google Drive: "
            "https://drive.google.com/file/d/1rQAC2ZddDjzwB2OVqAcNgCFEf3gLNa9U/view?usp=sharing",
        ),
    ),
    # for backbones none of the files above holds: never set beside a run (no file matches)
    figures=tuple(
        figure
        for variant, recalls in (
            ("ResNet-101, 2048-d", ((91.8, 97.5), (90.4, 95.7), (86.6, 92.0), (88.6, 95.9))),
            ("VGG16, 512-d", ((89.7, 96.4), (88.5, 94.5), (79.5, 87.2), (82.8, 90.0))),
        )
        for figure in reported(
            "gmberton/CosPlace issue 13, the maintainer's comment",
            None,
            *rows((PITTS250K, PITTS30K, MSLS_VAL, TOKYO247), recalls),
            variant=variant,
        )
    ),
    preprocess="resize-first",  # no resize at native size: ToTensor → Normalize(ImageNet)
    interpolation="bilinear",
    mark=MARK,
)

EIGENPLACES_RELEASE = "https://github.com/gmberton/EigenPlaces/releases/download/v1.0/"
# hubconf.py's AVAILABLE_TRAINED_MODELS (gmberton/EigenPlaces a2969f7): the descriptor sizes per backbone,
# as the file names spell them; the first file is ``--weights official``'s (the CosPlace fixture's variant)
EIGENPLACES_SIZES = {
    "ResNet50": (2048, 1024, 512, 256, 128),
    "ResNet101": (2048, 1024, 512, 256, 128),
    "ResNet18": (512, 256),
    "VGG16": (512,),
}


def eigenplaces_file(backbone: str, size: int) -> OfficialFile:
    """``{backbone}_{size}_eigenplaces.pth``, as hubconf.py downloads it (a flat state dict)."""
    name = f"{backbone}_{size}_eigenplaces.pth"
    note = f"{backbone}, {size}-d (torch.hub)"
    if size == 1024:
        note += "; VPR-methods-evaluation's parser does not offer 1024"
    return OfficialFile(name, EIGENPLACES_RELEASE + name, note=note)


SF_XL_V1 = ("SF-XL test v1", None)  # no reader here names SF-XL's v1 test set
EIGENPLACES = Published(
    paper=(
        "Berton, Trivigno, Caputo, Masone, EigenPlaces: Training Viewpoint Robust Models for Visual Place "
        "Recognition, ICCV 2023"
    ),
    backbone="resnet50 (CosPlace's network and key names; the file decides the backbone)",
    descriptor_dim=2048,
    input_size=None,
    licence="MIT (gmberton/EigenPlaces)",
    files=tuple(eigenplaces_file(b, size) for b, sizes in EIGENPLACES_SIZES.items() for size in sizes),
    figures=reported(
        "quoted in gmberton/EigenPlaces issue 4",
        "ResNet50_2048_eigenplaces.pth",
        (*SF_XL_V1, 84.1, None),
        secondhand=True,
    )
    + reported(
        "quoted in gmberton/EigenPlaces issue 3",
        "ResNet50_128_eigenplaces.pth",
        (*SF_XL_V1, 72.4, None),
        secondhand=True,
    ),
    preprocess="resize-first",  # test_dataset.py: ToTensor → Normalize(ImageNet) at native size
    interpolation="bilinear",
    mark=MARK,
)


@dataclass(frozen=True)
class CosPlaceOptions:
    backbone: str = option(
        "resnet50", "resnet18, resnet50, resnet101, resnet152 or vgg16 (a file decides it)"
    )
    descriptor_dim: int = option(2048, "output size of the final Linear (an official file decides it)")

    def __post_init__(self):
        if self.backbone not in BACKBONE_CHANNELS:
            raise ValueError(f"backbone {self.backbone!r} is not one of {', '.join(BACKBONE_CHANNELS)}")
        if self.descriptor_dim < 1:
            raise ValueError("descriptor_dim must be ≥ 1")


class CosPlaceNet(nn.Module):
    """(B, 3, H, W) → (B, D) L2-normalised: backbone → L2 over channels → GeM → Linear → L2."""

    def __init__(self, backbone: nn.Module, channels: int, descriptor_dim: int):
        super().__init__()
        self.backbone = backbone
        self.channel_norm = L2Norm(dim=1)
        self.gem = GeM(p=3.0, eps=GEM_EPS)  # avg_pool2d over the whole map, as the authors' GeM
        self.fc = nn.Linear(channels, descriptor_dim)
        self.norm = L2Norm()
        self.descriptor_dim = descriptor_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)  # (B, C, h, w); timm's features_only ResNet returns [that]
        if isinstance(features, list):
            features = features[-1]
        return self.norm(self.fc(self.gem(self.channel_norm(features))))


def convert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """The authors' state dict → ours, and the backbone and descriptor size it holds (VGG16: its
    convolutions have biases; a ResNet: its blocks per layer and their kind). Keys this map does not know
    pass through, so loading names them as unexpected."""
    fc_weight = state["aggregation.3.weight"]  # (D, C); KeyError for a file without it
    vgg = "backbone.0.bias" in state
    ours = {}
    for key, value in state.items():
        parts = key.split(".", 2)
        if not vgg and len(parts) == 3 and parts[0] == "backbone" and parts[1] in RESNET_CHILDREN:
            key = f"backbone.{RESNET_CHILDREN[parts[1]]}.{parts[2]}"
        ours[key] = value
    backbone = "vgg16" if vgg else resnet_layout(ours, "backbone.")[0]
    if backbone not in BACKBONE_CHANNELS:
        raise CheckpointError(
            f"a CosPlace/EigenPlaces file holding a {backbone}, which is none of their backbones "
            f"({', '.join(BACKBONE_CHANNELS)})"
        )
    ours["gem.p"] = ours.pop(MARK).reshape(())  # (1,) → the scalar of our GeM
    ours["fc.weight"] = ours.pop("aggregation.3.weight")
    ours["fc.bias"] = ours.pop("aggregation.3.bias")
    return ours, {"backbone": backbone, "descriptor_dim": int(fc_weight.shape[0])}


def build(cfg: ModelConfig, options: CosPlaceOptions) -> CosPlaceNet:
    """The network for ``options.backbone``: timm's, with torchvision's layers, names and ImageNet weights."""
    if options.backbone == "vgg16":
        vgg, weights = create_timm_model("vgg16", cfg.pretrained, cfg.pretrained_file)
        backbone, facts = vgg.features[:VGG16_CUT], {"weights": weights, **normalisation(vgg)}  # stride 16
    else:  # conv1 … layer4, stride 32
        backbone, facts = resnet_trunk(options.backbone, 4, cfg.pretrained, cfg.pretrained_file)
    model = CosPlaceNet(backbone, BACKBONE_CHANNELS[options.backbone], options.descriptor_dim)
    model.backbone_facts = {key: facts[key] for key in ("weights", "mean", "std")}
    return model


@register_published(
    "cosplace",
    "CosPlace: ResNet/VGG16 + channel L2 + GeM + FC (the authors' files; the file decides backbone and size)",
    COSPLACE,
    CosPlaceOptions,
    convert,
)
def cosplace(cfg: ModelConfig, options: CosPlaceOptions) -> CosPlaceNet:
    return build(cfg, options)


@register_published(
    "eigenplaces",
    "EigenPlaces: CosPlace's network trained for viewpoint robustness (the authors' files)",
    EIGENPLACES,
    CosPlaceOptions,
    convert,
)
def eigenplaces(cfg: ModelConfig, options: CosPlaceOptions) -> CosPlaceNet:
    return build(cfg, options)
