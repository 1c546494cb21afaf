"""`vpr-bench run --config FILE`: a recorded run replays to the same metrics; a hand-written file works;
precedence is preset < file < flags; unknown keys fail naming the file, the key and the valid keys."""

import json
from pathlib import Path

import pytest

from vpr_bench.config import read_config_file
from vpr_bench.testing import TINY_CLI, run_cli

EXAMPLE = Path(__file__).parents[1] / "docs" / "run-config.example.yaml"
BUDGET = [
    *("--epochs", "2", "--batch-size", "4", "--negatives", "2", "--negative-samples", "20"),
    *("--queries-per-epoch", "12", "--lr", "1e-3"),
]


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.glob("*/*/*") if p.is_dir()]
    return run_dir


@pytest.fixture
def captured(monkeypatch):
    """`run` resolves its configuration but trains nothing: the RunConfig it would train with."""
    import vpr_bench.runner

    seen = []
    monkeypatch.setattr(vpr_bench.runner, "train_run", lambda cfg, **kw: seen.append(cfg) or Path("x"))
    return seen


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_recorded_run_replays_to_the_same_metrics(synthetic_root, tmp_path, capsys):
    first_out, replay_out = tmp_path / "first", tmp_path / "replay"
    dataset = ["--dataset", f"folder:{synthetic_root}"]
    code, _, err = run_cli(
        ["run", "--method", "gem", *dataset, "--out", str(first_out), *TINY_CLI, *BUDGET], capsys
    )
    assert code == 0, err
    first = only_run(first_out)
    code, _, err = run_cli(["run", "--config", str(first / "config.json"), "--out", str(replay_out)], capsys)
    assert code == 0, err
    replay = only_run(replay_out)
    before, after = (json.loads((d / "metrics.json").read_text()) for d in (first, replay))
    assert after["metrics"] == before["metrics"] and after["run_id"] != before["run_id"]
    losses = [[h["loss"] for h in r["training"]["history"]] for r in (before, after)]
    assert losses[0] == losses[1] and len(losses[0]) == 2
    saved = [json.loads((d / "config.json").read_text()) for d in (first, replay)]
    differing = {key for key in saved[0] if saved[0][key] != saved[1].get(key)}
    assert differing <= {"argv", "out"} and saved[1]["out"] == str(replay_out)  # (argv: pytest's here)


def test_precedence_preset_then_file_then_flags(tmp_path, capsys, captured):
    config = write(
        tmp_path / "run.yaml",
        "model: {method: gem, backbone: test_resnet}\n"
        "data: {dataset: synthetic, image_size: [40, 56]}\n"
        "train: {lr: 1e-2, epochs: 5}\n",
    )
    code, _, err = run_cli(["run", "--config", str(config), "--epochs", "7"], capsys)
    assert code == 0, err
    (cfg,) = captured
    assert cfg.train.epochs == 7  # the flag over the file
    assert cfg.train.lr == 0.01 and cfg.data.image_size == (40, 56)  # the file over the preset
    assert cfg.model.backbone == "test_resnet" and cfg.train.queries_per_epoch == 200  # the demo preset
    assert cfg.model.backbone_stage == 3  # gem's demo value: the file's method chose the method preset


def test_the_files_preset_unless_one_is_given(tmp_path, capsys, captured):
    config = write(tmp_path / "run.json", json.dumps({"preset": "paper", "model": {"method": "gem"}}))
    code, _, err = run_cli(["run", "--config", str(config), "--dataset", "synthetic"], capsys)
    assert code == 0, err
    code, _, err = run_cli(
        ["run", "--config", str(config), "--dataset", "synthetic", "--preset", "demo"], capsys
    )
    assert code == 0, err
    paper, demo = captured
    assert (paper.preset, paper.data.image_size, paper.train.lr) == ("paper", (224, 224), 1e-5)
    assert (demo.preset, demo.data.image_size, demo.train.lr) == ("demo", (48, 64), 1e-3)


def test_a_recorded_null_is_a_value(tmp_path, capsys, captured):
    config = write(
        tmp_path / "run.yaml", "model: {method: gem, backbone_stage: null}\ndata: {dataset: synthetic}\n"
    )
    code, _, err = run_cli(["run", "--config", str(config)], capsys)
    assert code == 0, err
    assert captured[0].model.backbone_stage is None  # not the demo preset's 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("train: {lrate: 0.1}\n", "unknown key 'lrate' in section train; valid keys of train: epochs, "),
        ("learning_rate: 0.1\n", "unknown key 'learning_rate'; valid: the sections data, model, eval, "),
        ("train: {epochs: ten}\n", "train.epochs = 'ten' is not int"),
        ("data: {image_size: [1, 2, 3]}\n", "data.image_size = [1, 2, 3] is not tuple[int, int]"),
        ("train: [1, 2\n", "not valid YAML: "),
    ],
)
def test_bad_files_fail_in_one_line_naming_the_file(text, message, tmp_path, capsys):
    config = write(tmp_path / "bad.yaml", text)
    code, _, err = run_cli(["run", "--config", str(config)], capsys)
    assert code == 2 and err.startswith(f"error: --config {config}: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_file_and_resume_with_config_are_refused(tmp_path, capsys):
    code, _, err = run_cli(["run", "--config", str(tmp_path / "none.yaml")], capsys)
    assert code == 2 and "--config" in err and "none.yaml: cannot read it" in err
    code, _, err = run_cli(["run", "--resume", str(tmp_path), "--config", "x.yaml"], capsys)
    assert code == 2 and "drop --config" in err


def test_the_documented_example_resolves(capsys, captured):
    assert read_config_file(EXAMPLE)["model.method"] == "netvlad"
    code, _, err = run_cli(["run", "--config", str(EXAMPLE)], capsys)
    assert code == 0, err
    (cfg,) = captured
    assert cfg.model.method == "netvlad" and cfg.data.dataset == "synthetic"
    assert cfg.train.lr == 1e-3 and cfg.model.options["clusters"] == 16 and cfg.train.tensorboard is False


def test_a_tscm_student_config_replays_the_student_of_its_teacher(tmp_path, capsys, captured):
    """A recorded student names its teacher run; replaying it trains that role alone, not the pipeline."""
    config = {
        "argv": ["vpr-bench", "run", "--method", "tscm"],
        "record_extra": {"pipeline": {"name": "tscm", "role": "student", "teacher_run": "t"}},
        "model": {"method": "tscm-student"},
        "data": {"dataset": "synthetic"},
        "distill": {"teacher": str(tmp_path / "teacher-run"), "kd_loss": "rkd"},
    }
    path = write(tmp_path / "config.json", json.dumps(config))
    code, _, err = run_cli(["run", "--config", str(path)], capsys)
    if "unknown method 'tscm-student'" in err:
        pytest.skip("the tscm plugin is not installed")
    assert code == 0, err
    (cfg,) = captured
    assert cfg.model.method == "tscm-student" and cfg.distill.kd_loss == "rkd"
    assert cfg.distill.teacher == str(tmp_path / "teacher-run")
