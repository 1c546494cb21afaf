"""MixVPR, Conv-AP, BoQ and SALAD trained from a backbone alone, with the parts their papers freeze frozen
(``zoo.models._trunks``): built on tiny timm models (test_resnet, test_vit) whose "pretrained" weights are
a local file, the frozen parameters get no gradient and do not move in an optimiser step while the others
do; a trunk that starts from random weights trains whole (the official ``if pretrained:``); ``vpr-bench
list`` says what trains; ``vpr-bench run`` trains MixVPR end to end and records the parts."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from vpr_bench.api import ConfigError, ModelConfig, build_method, trainable_parts
from vpr_bench.testing import TINY_CLI, run_cli, synthetic_root  # noqa: F401  (fixture)

# (method, timm backbone, options, input side, frozen parts, trained parts) as each paper's code freezes
CASES = {
    "mixvpr": (
        "test_resnet",
        {"map_cells": 4, "out_channels": 8, "out_rows": 2},
        32,
        ["backbone.conv1", "backbone.bn1", "backbone.layer1", "backbone.layer2"],  # layers_to_freeze=2
        ["backbone.layer3", "mixers", "channel_proj", "row_proj"],  # layer4 cropped (last_layer=3)
    ),
    "convap": (
        "test_resnet",
        {"out_channels": 8},
        32,
        ["backbone.conv1", "backbone.bn1", "backbone.layer1", "backbone.layer2"],
        ["backbone.layer3", "backbone.layer4", "channel_pool"],
    ),
    "boq-resnet": (
        "test_resnet",
        {"channels": 64, "queries": 4, "blocks": 1, "rows": 2},
        32,
        ["backbone.conv1", "backbone.bn1", "backbone.layer1"],  # unfreeze_n_blocks=2: layer2, layer3 train
        ["backbone.layer2", "backbone.layer3", "aggregator"],
    ),
    "boq-vit": (
        "test_vit",  # 6 blocks; the last 2 train; the final norm (unused by BoQ) stays frozen
        {"channels": 64, "queries": 4, "blocks": 1, "rows": 2},
        32,
        [
            "backbone.vit.patch_embed",
            "backbone.vit.blocks.0-3",
            "backbone.vit.norm",
            "backbone.vit.cls_token",
            "backbone.vit.pos_embed",
        ],
        ["backbone.vit.blocks.4-5", "aggregator"],
    ),  # fmt: skip
    "salad": (
        "test_vit",  # num_trainable_blocks=2 of 6 here (the paper's 4 of 12); the final norm trains
        {"clusters": 4, "cluster_dim": 8, "token_dim": 8, "hidden": 16, "num_trainable_blocks": 2},
        64,  # 4×4 patches: more than the 4 clusters
        [
            "backbone.vit.patch_embed",
            "backbone.vit.blocks.0-3",
            "backbone.vit.cls_token",
            "backbone.vit.pos_embed",
        ],
        ["backbone.vit.blocks.4-5", "backbone.vit.norm", "aggregator"],
    ),  # fmt: skip
}


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory) -> dict[str, str]:
    """The tiny timm models' "pretrained" weights, saved as a local file: their random initialisation,
    perturbed (timm starts a residual branch's last BatchNorm at zero, which would leave the branch's
    convolutions without gradient)."""
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name in ("test_resnet", "test_vit"):
        torch.manual_seed(0)
        model = timm.create_model(name)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
        torch.save(model.state_dict(), folder / f"{name}.pth")
        files[name] = str(folder / f"{name}.pth")
    return files


def build(case: str, weights_files: dict | None, **options):
    backbone, case_options, *_ = CASES[case]
    method = case.split("-")[0]
    start = {"pretrained_file": weights_files[backbone]} if weights_files else {"pretrained": False}
    cfg = ModelConfig(method=method, backbone=backbone, options={**case_options, **options}, **start)
    return build_method(cfg)


@pytest.mark.parametrize("case", list(CASES))
def test_the_papers_frozen_parts_get_no_gradient_and_do_not_move(case, weights_files):
    _, _, side, frozen, trained = CASES[case]
    torch.manual_seed(0)
    model = build(case, weights_files).train()
    parts = trainable_parts(model)
    assert sorted(parts["frozen"]) == sorted(frozen) and sorted(parts["trained"]) == sorted(trained)
    assert parts["frozen_parameters"] > 0 and parts["trained_parameters"] > 0
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    descriptors = model(torch.randn(4, 3, side, side))
    assert descriptors.shape == (4, model.descriptor_dim)
    (descriptors[:2] * descriptors[2:]).sum().backward()  # any loss of the descriptors
    optimiser.step()
    for name, parameter in model.named_parameters():
        moved = not torch.equal(before[name], parameter.detach())
        if parameter.requires_grad:
            assert parameter.grad is not None, name
        else:
            assert parameter.grad is None and not moved, name
        assert moved == parameter.requires_grad, name  # every trainable tensor moved, no frozen one


@pytest.mark.parametrize("case", ["mixvpr", "boq-vit", "salad"])
def test_a_trunk_from_random_weights_trains_whole(case):
    parts = trainable_parts(build(case, None))
    assert parts["frozen"] == [] and parts["frozen_parameters"] == 0


def test_the_aggregator_sizes_follow_the_backbone(weights_files):
    model = build("mixvpr", weights_files)
    assert model.channel_proj.in_features == timm.create_model("test_resnet").layer3[-1].conv3.out_channels
    salad = build("salad", weights_files)
    assert salad.aggregator.token_features[0].in_features == 64  # test_vit's width


def test_freezing_settings_that_do_not_fit_the_trunk_fail_in_one_line(weights_files):
    with pytest.raises(ConfigError, match="keeps stages up to layer3, not layer4"):
        build("mixvpr", weights_files, layers_to_freeze=4)
    with pytest.raises(ConfigError, match="7 trainable blocks: the ViT has 6"):
        build("salad", weights_files, num_trainable_blocks=7)
    with pytest.raises(ConfigError, match="salad needs a ViT with a class token"):
        build_method(ModelConfig(method="salad", backbone="test_resnet", pretrained=False))
    with pytest.raises(ConfigError, match="mixvpr aggregates a convolutional feature map"):
        build_method(ModelConfig(method="mixvpr", backbone="test_vit", pretrained=False))


def test_list_shows_which_parts_train(capsys):
    code, out, _ = run_cli(["list", "--method", "mixvpr"], capsys)
    assert code == 0 and "trainable: yes" in out
    assert "trains: layer3 of the ResNet trunk" in out and "frozen: conv1, bn1, layer1, layer2" in out
    assert "layers_to_freeze=2" in out and "amaralibey/MixVPR 4043915" in out
    for method, words in (("convap", "layer3 and layer4"), ("boq", "last unfreeze_n_blocks=2"),
                          ("salad", "last num_trainable_blocks=4")):  # fmt: skip
        code, out, _ = run_cli(["list", "--method", method], capsys)
        assert code == 0 and "trainable: yes" in out and words in out
    code, out, _ = run_cli(["list", "--method", "cosplace"], capsys)
    assert "trainable: no" in out


def test_run_refuses_an_evaluation_only_model(capsys):
    code, _, err = run_cli(["run", "--method", "cosplace", "--dataset", "synthetic", *TINY_CLI], capsys)
    assert code == 2 and "cosplace: evaluation only" in err and len(err.strip().splitlines()) == 1


def test_mixvpr_trains_end_to_end_and_records_its_parts(synthetic_root, weights_files, tmp_path, capsys):  # noqa: F811
    budget = "--epochs 1 --queries-per-epoch 8 --batch-size 4 --negatives 2 --negative-samples 20".split()
    sizes = [f"--model-option={o}" for o in ("map_cells=4", "out_channels=8", "out_rows=2", "mix_depth=1")]
    args = ["--method", "mixvpr", "--dataset", f"folder:{synthetic_root}", "--preset", "demo", *TINY_CLI]
    start = ["--pretrained-file", weights_files["test_resnet"], "--out", str(tmp_path)]
    code, _, err = run_cli(["run", *args, *sizes, *budget, *start], capsys)
    assert code == 0, err
    (run_dir,) = tmp_path.glob("*/mixvpr/*")
    record = json.loads((run_dir / "metrics.json").read_text())
    parts = record["training"]["parts"]
    assert parts["frozen"] == ["backbone.conv1", "backbone.bn1", "backbone.layer1", "backbone.layer2"]
    assert parts["trained"] == ["backbone.layer3", "mixers", "channel_proj", "row_proj"]
    assert record["backbone"] == "test_resnet" and record["cost"]["descriptor_dim"] == 16
    code, _, err = run_cli(
        ["eval", *args, *sizes, "--checkpoint", str(run_dir), "--out", str(tmp_path)], capsys
    )
    assert code == 0, err  # the trained run loads back for evaluation (its own layout, not the authors')
