"""Training curves: training.csv rewritten from the history each epoch, TensorBoard scalars when asked,
and one clear line when the tensorboard package is missing."""

import csv
import sys
import types
from pathlib import Path

import pytest

from tests.conftest import tiny_config
from vpr_bench.config import TrainConfig
from vpr_bench.errors import ConfigError
from vpr_bench.runner import train_run
from vpr_bench.testing import TINY_CLI, TINY_TRAINING, run_cli
from vpr_bench.training.curves import CSV_NAME, TrainingCurves, history_csv, tag, tensorboard_dir

ROWS = [
    {"epoch": 1, "loss": 0.5, "val_R@1": 20.0, "lr": 1e-3, "seconds": 1.5},
    {"epoch": 2, "loss": 0.25, "val_R@1": 30.0, "val_R@5": 60.0, "lr": 9.9e-4, "seconds": 1.25},
]


class FakeWriter:
    """Stands in for ``torch.utils.tensorboard.SummaryWriter`` (tensorboard is an optional extra)."""

    made: list = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.flushed, self.closed = log_dir, [], 0, False
        FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        self.flushed += 1

    def close(self):
        self.closed = True


@pytest.fixture
def fake_tensorboard(monkeypatch):
    FakeWriter.made = []
    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    return FakeWriter.made


@pytest.fixture
def no_tensorboard(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` raises ImportError


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_csv_has_every_column_and_leaves_missing_cells_empty():
    rows = list(csv.DictReader(history_csv(ROWS).splitlines()))
    assert list(rows[0]) == ["epoch", "loss", "val_R@1", "lr", "seconds", "val_R@5"]
    assert rows[0]["val_R@5"] == "" and rows[1]["val_R@5"] == "60.0" and rows[1]["loss"] == "0.25"


def test_tags_and_where_events_go(tmp_path):
    assert (tag("val_R@5"), tag("loss"), tag("lr")) == ("val/R@5", "train/loss", "train/lr")
    run_dir = tmp_path / "results" / "synthetic" / "gem" / "20260101-000000-abcdef"
    assert tensorboard_dir(run_dir, TrainConfig()) is None
    assert tensorboard_dir(run_dir, TrainConfig(tensorboard=True)) == run_dir
    logs = tensorboard_dir(run_dir, TrainConfig(log_dir=str(tmp_path / "tb")))
    assert logs == tmp_path / "tb" / "synthetic" / "gem" / "20260101-000000-abcdef"


def test_each_epoch_rewrites_the_csv_and_logs_its_scalars(tmp_path, fake_tensorboard):
    curves = TrainingCurves(tmp_path, TrainConfig(log_dir=str(tmp_path / "tb")))
    (writer,) = fake_tensorboard
    curves.epoch_end(ROWS[:1])
    curves.epoch_end(ROWS)
    assert [row["epoch"] for row in read_csv(tmp_path / CSV_NAME)] == ["1", "2"]
    assert ("val/R@5", 60.0, 2) in writer.scalars and ("train/loss", 0.25, 2) in writer.scalars
    assert {t for t, _, step in writer.scalars if step == 1} == {
        "train/loss",
        "val/R@1",
        "train/lr",
        "train/seconds",
    }
    assert writer.flushed == 2 and writer.log_dir.startswith(str(tmp_path / "tb"))
    del curves  # the trainer has no end hook: the writer closes with it
    assert writer.closed


def test_off_the_main_rank_nothing_is_written(tmp_path, fake_tensorboard):
    TrainingCurves(tmp_path, TrainConfig(tensorboard=True), main=False).epoch_end(ROWS)
    assert not fake_tensorboard and not (tmp_path / CSV_NAME).exists()


def test_a_missing_tensorboard_is_one_line_at_start_up(synthetic_root, tmp_path, capsys, no_tensorboard):
    with pytest.raises(ConfigError, match=r"pip install 'vpr-bench\[tensorboard\]'"):
        TrainingCurves(tmp_path, TrainConfig(tensorboard=True))
    out = tmp_path / "results"
    args = ["run", "--method", "gem", "--dataset", f"folder:{synthetic_root}", "--out", str(out), *TINY_CLI]
    code, _, err = run_cli([*args, "--log-dir", str(tmp_path / "tb")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: --tensorboard/--log-dir need the tensorboard package")
    assert not out.exists()  # refused before any run folder was made


def test_a_training_run_writes_its_curves(synthetic_root, tmp_path, fake_tensorboard):
    import json

    cfg = tiny_config(
        **{"data.dataset": f"folder:{synthetic_root}", "out": str(tmp_path), **TINY_TRAINING},
        **{"train.lr": 1e-3, "train.tensorboard": True, "eval.recall_at": (1, 3, 5)},
    )
    run_dir = train_run(cfg)
    history = json.loads((run_dir / "metrics.json").read_text())["training"]["history"]
    rows = read_csv(run_dir / CSV_NAME)
    assert len(rows) == len(history) == 2
    assert {"epoch", "loss", "val_R@1", "val_R@3", "val_R@5", "val_MRR@5", "lr", "seconds"} <= set(rows[0])
    for row, epoch in zip(rows, history, strict=True):
        assert float(row["loss"]) == epoch["loss"] and float(row["val_R@3"]) == epoch["val_R@3"]
    assert float(rows[1]["lr"]) < float(rows[0]["lr"])  # the scheduler's decay, epoch by epoch
    (writer,) = fake_tensorboard
    assert writer.log_dir == str(run_dir)
    assert [step for t, _, step in writer.scalars if t == "val/R@1"] == [1, 2]


def test_a_resumed_run_ends_with_the_uninterrupted_runs_csv(synthetic_root, tmp_path, monkeypatch):
    from vpr_bench.training.trainer import Trainer

    def tiny(out):
        return tiny_config(**{"data.dataset": f"folder:{synthetic_root}", "out": str(out), **TINY_TRAINING})

    full = read_csv(train_run(tiny(tmp_path / "full")) / CSV_NAME)
    original, calls = Trainer.compute_loss, []

    def crash_in_epoch_2(self, *args):  # like SIGKILL at epoch 2, batch 2: nothing saved on the way out
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("killed")
        return original(self, *args)

    with monkeypatch.context() as patch, pytest.raises(RuntimeError, match="killed"):
        patch.setattr(Trainer, "compute_loss", crash_in_epoch_2)
        train_run(tiny(tmp_path / "cut"))
    (run_dir,) = (tmp_path / "cut").glob("*/*/*")
    assert [row["epoch"] for row in read_csv(run_dir / CSV_NAME)] == ["1"]  # written as epoch 1 ended
    resumed = read_csv(train_run(resume=run_dir) / CSV_NAME)
    assert [list(row) for row in resumed] == [list(row) for row in full]
    for mine, theirs in zip(resumed, full, strict=True):
        mine.pop("seconds"), theirs.pop("seconds")
        assert {k: float(v) for k, v in mine.items()} == pytest.approx(
            {k: float(v) for k, v in theirs.items()}, rel=1e-5
        )
