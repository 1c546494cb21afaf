"""What a dataset reader provides, and the options every reader understands."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from vpr_bench.config import DataConfig
from vpr_bench.datasets.split import Split
from vpr_bench.errors import DatasetError

LAYOUTS = ("auto", "netvlad", "tscm")


def default_data_dir() -> Path:
    """The default data root: ``$VPR_BENCH_DATA`` or ``./datasets``."""
    return Path(os.environ.get("VPR_BENCH_DATA", "datasets"))


def dataset_root(data: DataConfig, name: str) -> Path:
    """Where dataset ``name`` lives: ``--data-root``, else ``<data dir>/<name>``."""
    return Path(data.data_root) if data.data_root else default_data_dir() / name


class VPRDataset:
    """A named dataset with one or more splits, each loaded on demand."""

    name: str
    root: Path
    splits: tuple[str, ...]

    def load_split(self, split: str) -> Split:
        raise NotImplementedError

    def split(self, split: str, options: DataConfig | None = None) -> Split:
        if split not in self.splits:
            raise DatasetError(f"{self.name} has no {split!r} split (available: {', '.join(self.splits)})")
        loaded = self.load_split(split)
        if options is not None and options.pos_radius is not None:
            loaded.pos_radius = options.pos_radius
        if options is not None and options.train_pos_radius is not None:
            loaded.train_pos_radius = options.train_pos_radius
        return loaded


def read_columns(
    path: Path, columns: tuple[str, ...], optional: tuple[str, ...] = (), expected: str | None = None
) -> dict[str, list[str]]:
    """The named columns of a CSV with a header row, as strings (``optional`` ones where present); a
    missing column or a row of another length ends in one line naming the file. ``expected``: what the
    error says such files have (default: "expected <columns>")."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        missing = [c for c in columns if c not in header]
        if missing:
            raise DatasetError(
                f"{path} has no column {', '.join(missing)} (header: {','.join(header) or 'none'}); "
                f"{expected or 'expected ' + ', '.join(columns)}"
            )
        rows = [row for row in reader if row]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DatasetError(f"{path}: line {number} has {len(row)} fields, the header {len(header)}")
    wanted = [*columns, *(c for c in optional if c in header)]
    return {c: [row[header.index(c)] for row in rows] for c in wanted}
