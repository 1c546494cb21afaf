import pytest

from vpr_bench.config import RunConfig, resolve
from vpr_bench.errors import ConfigError


def test_presets_per_method_and_cli_overrides():
    assert resolve("demo", {"model.method": "gem"}).model.backbone_stage == 3
    assert resolve("demo", {"model.method": "netvlad"}).model.backbone_stage == 2
    assert resolve("demo", {"model.method": "netvlad", "model.backbone_stage": 4}).model.backbone_stage == 4
    paper = resolve("paper", {})
    assert (paper.train.lr, paper.train.weight_decay, paper.train.negatives, paper.train.epochs) == (
        1e-5,
        1e-3,
        10,
        200,
    )
    assert paper.data.image_size == (224, 224) and paper.model.backbone == "resnet50"


def test_presets_are_not_mutated_between_resolutions():
    first = resolve("demo", {"model.method": "netvlad"})
    first.model.options["clusters"] = 99
    assert resolve("demo", {"model.method": "netvlad"}).model.options["clusters"] == 16
    assert resolve("demo", {"model.method": "gem"}).model.options == {}  # netvlad's values stay its own


def test_round_trip_through_dict():
    cfg = resolve("demo", {"data.image_size": (40, 50), "eval.recall_at": (1, 3), "train.lr": 0.01})
    again = RunConfig.from_dict({**cfg.to_dict(), "argv": ["x"], "environment": {}})
    assert again == cfg


def test_unknown_preset():
    with pytest.raises(ConfigError, match="--preset 'fast' is not one of demo, paper"):
        resolve("fast", {})


def test_a_checkpoint_file_decides_over_the_preset_and_the_flags_over_the_file():
    from_file = {
        "model.backbone": "resnet50",
        "model.options": {"clusters": 32},
        "data.image_size": (224, 224),
    }
    cfg = resolve("demo", {"model.method": "netvlad", "data.image_size": (64, 64)}, from_file)
    assert cfg.model.backbone == "resnet50" and cfg.model.options == {"clusters": 32}
    assert cfg.data.image_size == (64, 64)  # an explicit --image-size overrides the file, visibly
    with pytest.raises(
        ConfigError, match="--backbone resnet18 contradicts the checkpoint, which holds resnet50"
    ):
        resolve("demo", {"model.method": "netvlad", "model.backbone": "resnet18"}, from_file)
    with pytest.raises(ConfigError, match="--model-option clusters=8 contradicts the checkpoint"):
        resolve("demo", {"model.method": "netvlad", "model.options": {"clusters": 8}}, from_file)
