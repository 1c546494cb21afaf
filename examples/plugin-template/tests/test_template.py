"""A starting point for the plugin's tests: the model on timm's tiny test_resnet, the loss by hand."""

import math

import pytest
import timm
import torch

from vpr_bench import api


def tiny_model(**model):
    # timm's test_resnet: 62k parameters, registered in timm like the real ResNets; no weights to download
    values = {"method": "template-gem", "backbone": "test_resnet", "pretrained": False, **model}
    return api.build_method(api.ModelConfig(**values)).eval()


def test_descriptors_have_the_projected_size_and_unit_norm():
    model = tiny_model(descriptor_dim=24, options={"p": 2.5})
    with torch.no_grad():
        descriptors = model(torch.rand(3, 3, 32, 32))
    assert model.descriptor_dim == 24 and descriptors.shape == (3, 24)
    torch.testing.assert_close(descriptors.norm(dim=1), torch.ones(3))
    assert model.pool.p.item() == pytest.approx(2.5)
    assert model.backbone_facts["weights"] and len(model.backbone_facts["mean"]) == 3


def test_without_a_projection_the_descriptor_is_the_backbone_width():
    model = tiny_model()
    assert model.descriptor_dim == model.backbone_facts["channels"]
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, model.descriptor_dim)


def test_the_first_backbone_stages_freeze_from_pretrained_weights(tmp_path):
    torch.save(timm.create_model("test_resnet").state_dict(), tmp_path / "weights.pth")
    model = tiny_model(pretrained_file=str(tmp_path / "weights.pth"), options={"layers_to_freeze": 1})
    parts = api.trainable_parts(model)
    assert parts["frozen"] == ["backbone.conv1", "backbone.bn1", "backbone.layer1"]
    assert parts["trained"] == ["backbone.layer2", "backbone.layer3", "backbone.layer4", "pool"]
    assert not any(p.requires_grad for p in model.backbone.layer1.parameters())
    assert api.trainable_parts(tiny_model(options={"layers_to_freeze": 1}))["frozen"] == []  # random start


def test_bad_options_fail_naming_the_option():
    with pytest.raises(api.ConfigError, match="p"):
        tiny_model(options={"p": 0})
    with pytest.raises(api.ConfigError, match="learn_p"):
        tiny_model(options={"gamma": 1})


def test_cosine_kd_loss_by_hand_on_2d_descriptors():
    loss = api.KD_LOSSES.build("template-cosine", 2)
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [3.0, 0.0], [-1.0, -1.0]])
    triplets = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    # 1 − cos per image: 0 (same direction), 1 (orthogonal), 2 (opposite); mean 1
    value = loss(student, indices_tuple=triplets, ref_emb=teacher)
    assert value.item() == pytest.approx(1.0)
    rotated = torch.tensor([[math.cos(0.5), math.sin(0.5)]])
    assert loss(rotated, ref_emb=teacher[:1]).item() == pytest.approx(1 - math.cos(0.5))


def test_cosine_kd_loss_trains_the_student_towards_the_teacher():
    loss = api.KD_LOSSES.build("template-cosine", 8)
    student = torch.randn(6, 8, requires_grad=True)
    teacher = torch.randn(6, 8)
    before = loss(student, ref_emb=teacher)
    before.backward()
    with torch.no_grad():
        after = loss(student - 10 * student.grad, ref_emb=teacher)
    assert after.item() < before.item()


def test_the_plugin_registers_its_entries_under_its_name():
    assert api.METHODS.get("template-gem").source == "plugin:template"
    assert api.KD_LOSSES.get("template-cosine").source == "plugin:template"
