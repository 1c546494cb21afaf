"""Training curves: each epoch's loss, validation Recall@N, learning rate and time.

``training.csv`` in the run folder is rewritten whole from ``Progress.history`` after every epoch, so a
resumed run's file holds exactly the epochs its checkpoint knows. With ``--tensorboard`` (or
``--log-dir DIR``) the same values go to TensorBoard through ``torch.utils.tensorboard``.
"""

from __future__ import annotations

import csv
import io
import weakref
from pathlib import Path

from vpr_bench._io import atomic_write_text
from vpr_bench.config import TrainConfig
from vpr_bench.errors import ConfigError

CSV_NAME = "training.csv"


def require_tensorboard():
    """``torch.utils.tensorboard.SummaryWriter``, or a ConfigError saying how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "--tensorboard/--log-dir need the tensorboard package, which is not installed: "
            "pip install 'vpr-bench[tensorboard]' (or drop the option; training.csv is written anyway)"
        ) from None
    return SummaryWriter


def tensorboard_dir(run_dir: Path, tc: TrainConfig) -> Path | None:
    """Where a run's event files go: ``<log_dir>/<dataset>/<method>/<run-id>`` (one TensorBoard over
    many runs), else the run folder with ``tensorboard``; None when neither is asked for."""
    if tc.log_dir:
        return Path(tc.log_dir).joinpath(*Path(run_dir).parts[-3:])
    return Path(run_dir) if tc.tensorboard else None


def history_csv(history: list[dict]) -> str:
    """One row per epoch; the columns of every row, in the order they first appear (a run resumed across
    versions may lack some in its early rows: those cells stay empty)."""
    columns = list(dict.fromkeys(key for row in history for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return text.getvalue()


def tag(key: str) -> str:
    """The TensorBoard tag of a history column: ``val_R@5`` → ``val/R@5``, ``loss`` → ``train/loss``."""
    return f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"


class TrainingCurves:
    """Writes a run's curves after each epoch (``epoch_end``); does nothing off the main rank."""

    def __init__(self, run_dir: Path | None, tc: TrainConfig, main: bool = True):
        main = main and run_dir is not None  # a trainer without a run folder (tests) writes nothing
        self.run_dir, self.main, self.writer = Path(run_dir or "."), main, None
        folder = tensorboard_dir(run_dir, tc) if main else None
        if folder is not None:
            self.writer = require_tensorboard()(log_dir=str(folder))
            weakref.finalize(self, self.writer.close)  # the trainer has no end hook; close with it

    def epoch_end(self, history: list[dict]) -> None:
        if not self.main or not history:
            return
        atomic_write_text(self.run_dir / CSV_NAME, history_csv(history))
        if self.writer is None:
            return
        row = history[-1]
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag(key), value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the TensorBoard writer (the end of ``fit``)."""
        if self.writer is not None:
            self.writer.close()
