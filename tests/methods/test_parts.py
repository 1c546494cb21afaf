"""Which parts of a network train: a timm trunk's leading stages (what a paper freezes), the record's
summary of trained and frozen parts, and what ``vpr-bench list`` says of a method's training."""

import pytest
import timm
import torch

from vpr_bench.errors import ConfigError
from vpr_bench.methods.parts import leading_stages, trainable_parts
from vpr_bench.spec import MethodSpec, TrainedParts


def trunk(out_index=None):
    kwargs = {"out_indices": (out_index,)} if out_index is not None else {}
    return timm.create_model("test_resnet", features_only=True, **kwargs)


def test_leading_stages_count_as_layers_to_freeze_does():
    model = trunk()
    names = {id(module): name for name, module in model.named_children()}
    assert leading_stages(model, -1) == []
    assert [names[id(m)] for m in leading_stages(model, 0)] == ["conv1", "bn1", "act1"]
    assert [names[id(m)] for m in leading_stages(model, 2)] == [
        "conv1", "bn1", "act1", "maxpool", "layer1", "layer2"
    ]  # fmt: skip


def test_a_stage_inside_a_container_takes_its_earlier_children():
    model = timm.create_model("mobilenetv3_small_050", features_only=True)  # stage 2 is blocks.1
    expected = [model.conv_stem, model.bn1, model.act1, model.blocks[0], model.blocks[1]]
    assert leading_stages(model, 2) == expected


def test_a_stage_the_trunk_lacks_fails_in_one_line():
    with pytest.raises(ConfigError, match="keeps stages up to layer3, not layer4"):
        leading_stages(trunk(out_index=3), 4)
    with pytest.raises(ConfigError, match="has 5 feature stages"):
        leading_stages(trunk(), 5)


def test_trainable_parts_names_the_largest_uniform_parts_and_counts_them():
    net = torch.nn.Module()
    net.backbone = torch.nn.Module()
    net.backbone.blocks = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(5))
    net.backbone.embed = torch.nn.Parameter(torch.zeros(3))
    net.head = torch.nn.Linear(2, 1)
    for block in net.backbone.blocks[:3]:
        block.requires_grad_(False)
    net.backbone.embed.requires_grad_(False)
    parts = trainable_parts(net)
    assert parts["frozen"] == ["backbone.embed", "backbone.blocks.0-2"]
    assert parts["trained"] == ["backbone.blocks.3-4", "head"]
    assert (parts["frozen_parameters"], parts["trained_parameters"]) == (3 + 3 * 6, 2 * 6 + 3)
    net.backbone.blocks[1].requires_grad_(True)  # not consecutive: not merged
    assert trainable_parts(net)["frozen"] == ["backbone.embed", "backbone.blocks.0", "backbone.blocks.2"]


def test_a_model_training_whole_lists_its_top_level_parts():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    assert trainable_parts(net) == {
        "trained": ["0", "2"], "frozen": [], "trained_parameters": 12, "frozen_parameters": 0
    }  # fmt: skip


def test_list_says_whether_and_how_a_method_trains():
    assert MethodSpec().training_lines() == [
        "trainable: yes (vpr-bench run)", "  trains: every parameter", "  frozen: nothing"
    ]  # fmt: skip
    declared = MethodSpec(trained_parts=TrainedParts("layer3, the head", "conv1..layer2", "repo abc main.py"))
    assert declared.training_lines()[1:] == [
        "  trains: layer3, the head", "  frozen: conv1..layer2", "  as in: repo abc main.py"
    ]  # fmt: skip
    assert MethodSpec(trainable=False).training_lines()[0].startswith("trainable: no")
