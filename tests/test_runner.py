"""What a trained run's record says it was given (``runner.training_budget``)."""

from types import SimpleNamespace

import torch

from vpr_bench.config import RunConfig
from vpr_bench.devices import device_name
from vpr_bench.methods.backbones import pretrained_backbones
from vpr_bench.runner import training_budget


def test_pretrained_is_recorded_per_backbone_from_what_was_loaded():
    teacher = {"weights": "pretrained:hub", "vit_weights": "random", "vit_model": "vit_tiny_patch16_224"}
    assert pretrained_backbones(teacher, "resnet18", True) == {
        "resnet18": True,
        "vit_tiny_patch16_224": False,
    }
    assert pretrained_backbones({"weights": "file:/w.pth", "channels": 256}, "resnet18", False) == {
        "resnet18": True
    }
    assert pretrained_backbones({}, "resnet18", False) == {"resnet18": False}  # no facts: what was asked


def test_the_budget_holds_lr_weight_decay_negatives_pretrained_and_the_device_name():
    cfg = RunConfig()
    progress = SimpleNamespace(epoch=2, history=[{"tuples": 8, "seconds": 1.0}] * 2)
    model = SimpleNamespace(
        backbone_facts={"weights": "random", "vit_weights": "pretrained:cache", "vit_model": "v"}
    )
    budget = training_budget(cfg, progress, torch.device("cpu"), model)
    train = cfg.train
    assert (budget["lr"], budget["weight_decay"], budget["negatives"]) == (
        train.lr,
        train.weight_decay,
        train.negatives,
    )
    assert budget["pretrained"] == {cfg.model.backbone: False, "v": True}
    assert budget["device"] == device_name(torch.device("cpu")) and "threads" in budget["device"]
