"""Leaderboards from run records: the rows and columns ``compare`` and ``ablate`` show (``render.py``
writes them out in five formats).

Rows are runs (``--all``) or the best run per (dataset, method, KD loss) merged across datasets, so that
several datasets become one column group each, as in the tables of VPR papers. Runs that differ only in
their seed can become one row (mean ± std); the training-budget columns whose values differ are added,
with a warning line. A value a record does not have (an older schema) shows as "—".
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vpr_bench.errors import ConfigError
from vpr_bench.results.store import Record

MISSING = "—"


class MeanStd(float):
    """A seed mean that remembers its spread: sorts and compares as the mean, prints "mean ± std"."""

    def __new__(cls, values: Sequence[float]):
        mean = float(np.mean(values))
        self = super().__new__(cls, mean)
        self.std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0  # sample std over seeds
        self.n = len(values)
        return self


# what a trained run was given (the record's "budget"): rows differing here are not like for like
BUDGET_FIELDS = ("max_epochs", "queries_per_epoch", "batch_size", "image_size", "pretrained", "device")


@dataclass(frozen=True)
class Column:
    key: str  # name in CSV/JSON and for --sort
    header: str
    field: str  # dotted path in the record
    fmt: str = "{}"
    better: str | None = None  # "max" or "min": the best value is marked
    priority: int = 0  # 0 = never dropped; higher = dropped earlier to fit the terminal
    per_dataset: bool = False  # one per dataset group
    scale: float = 1.0

    def value(self, record: Record | None):
        if record is None:
            return None
        value = record.get(self.field)
        if self.field == "created" and isinstance(value, str):
            return value[:10]
        if self.key == "weights":  # official (the authors' file), trained (here) or untrained
            if str(record.get("weights", "")).startswith("official "):
                return "official"
            return "trained" if value else "untrained"
        if isinstance(value, (int, float)) and not isinstance(value, bool) and self.scale != 1.0:
            return value / self.scale
        return value

    def text(self, value) -> str:
        if value is None:
            return MISSING
        if isinstance(value, MeanStd):
            return f"{self.fmt.format(float(value))} ± {self.fmt.format(value.std)}"
        if isinstance(value, list):  # seeds 1,2,3; an image size 48×64
            return ("," if self.key == "seeds" else "×").join(str(v) for v in value)
        try:
            return self.fmt.format(value)
        except (ValueError, TypeError):
            return str(value)


COLUMNS = {
    c.key: c
    for c in (
        Column("method", "method", "method"),
        Column("plugin", "plugin", "plugin", priority=6),
        Column("kd_loss", "KD loss", "distillation.kd_loss", priority=3),
        Column("backbone", "backbone", "backbone", priority=5),
        Column("preset", "preset", "preset", priority=7),
        Column("weights", "weights", "trained", priority=8),
        Column("R@1", "R@1", "metrics.R@1", "{:.1f}", "max", 0, True),
        Column("R@5", "R@5", "metrics.R@5", "{:.1f}", "max", 1, True),
        Column("R@10", "R@10", "metrics.R@10", "{:.1f}", "max", 2, True),
        Column("R@20", "R@20", "metrics.R@20", "{:.1f}", "max", 4, True),
        Column("asym_R@1", "asym R@1", "asymmetric.metrics.R@1", "{:.1f}", "max", 4, True),
        Column("dim", "dim", "cost.descriptor_dim", "{}", None, 6),
        Column("params_M", "params (M)", "cost.params", "{:.1f}", "min", 2, scale=1e6),
        Column("gflops", "GFLOPs", "cost.gflops_per_image", "{:.2f}", "min", 5),
        Column("ms_image", "ms/image", "cost.ms_per_image", "{:.2f}", "min", 3),
        Column("ms_query", "ms/query", "cost.ms_per_query", "{:.3f}", "min", 6),
        Column("peak_mb", "peak MB", "cost.peak_rss_mb", "{:.0f}", "min", 7),
        Column("date", "date", "created", priority=8),
        Column("run", "run id", "run_id", priority=7),
        # the training budget, shown where the rows differ (``budget_columns``)
        Column("epochs", "epochs", "budget.epochs", priority=3),
        Column("max_epochs", "max epochs", "budget.max_epochs", priority=3),
        Column("queries_per_epoch", "queries/epoch", "budget.queries_per_epoch", priority=4),
        Column("batch_size", "batch", "budget.batch_size", priority=5),
        Column("images_seen", "images seen", "budget.images_seen", priority=4),
        Column("image_size", "image size", "budget.image_size", priority=4),
        Column("pretrained", "pretrained", "budget.pretrained", priority=4),
        Column("device", "device", "budget.device", priority=4),
        Column("train_s", "train s", "budget.wall_s", "{:.0f}", None, 6),
        Column("seeds", "seeds", "seeds", priority=5),
    )
}
COMPARE = (
    "method", "plugin", "kd_loss", "backbone", "preset", "R@1", "R@5", "R@10", "R@20",
    "dim", "params_M", "gflops", "ms_image", "ms_query", "peak_mb", "date", "run",
)  # fmt: skip
IDENTITY = ("method", "plugin", "kd_loss", "backbone", "preset", "weights")  # columns before the groups
ABLATION = ("kd_loss", "R@1", "R@5", "R@10", "asym_R@1", "params_M", "ms_image", "run")


@dataclass
class Row:
    runs: dict[str, Record]  # dataset → the run shown for it

    @property
    def first(self) -> Record:
        return next(iter(self.runs.values()))


def select(records: Sequence[Record], best: bool = True, group=None) -> list[Row]:
    """One row per run, or (``best``) per (method, KD loss, backbone, preset) with its best run on each
    dataset by R@1 (latest on a tie). ``group``: a record's column group (default: its dataset)."""
    group = group or (lambda r: str(r.get("dataset")))
    if not best:
        return [Row({group(r): r}) for r in records]
    chosen: dict[tuple, dict[str, Record]] = {}
    for record in sorted(records, key=lambda r: str(r.get("created", ""))):
        identity = tuple(str(record.get(f)) for f in ("method", "distillation.kd_loss", "backbone", "preset"))
        dataset, runs = group(record), chosen.setdefault(identity, {})
        held = runs.get(dataset)
        if held is None or (record.get("metrics.R@1") or -1) >= (held.get("metrics.R@1") or -1):
            runs[dataset] = record
    return [Row(runs) for runs in chosen.values()]


def protocol_groups(records: Sequence[Record]):
    """A record's column group: its dataset, or "dataset [protocol]" where runs of one dataset were
    scored under different protocols (e.g. MSLS val-740 and the datasets_vg conversion), so that two
    protocols never share a column."""
    names: dict[str, set] = {}
    for r in records:
        names.setdefault(str(r.get("dataset")), set()).add(r.get("protocol.name"))

    def group(record: Record) -> str:
        dataset = str(record.get("dataset"))
        if len(names.get(dataset, ())) > 1:
            return f"{dataset} [{record.get('protocol.name') or 'protocol unknown'}]"
        return dataset

    return group


# settings that do not make two runs different experiments: the seed, where results go, the machine
IGNORED_SETTINGS = ("argv", "resume_argv", "environment", "record_extra", "seed", "out", "quiet")


def settings_key(record: Record) -> str:
    """A fingerprint of everything a run was configured with except its seed (and output folder,
    device, teacher run): runs with one key differ only in their seed."""
    try:
        config = json.loads((record.run_dir / "config.json").read_text())
    except (OSError, ValueError):
        config = {"budget": {k: v for k, v in (record.get("budget") or {}).items() if k in BUDGET_FIELDS}}
    config = {k: v for k, v in config.items() if k not in IGNORED_SETTINGS}
    for section, name in (("distill", "teacher"), ("eval", "device"), ("eval", "num_workers")):
        if isinstance(config.get(section), dict):
            config[section] = {k: v for k, v in config[section].items() if k != name}
    identity = [record.get(f) for f in ("dataset", "protocol.name", "method", "distillation.kd_loss")]
    text = json.dumps([identity, config], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


MEANED = ("metrics", "asymmetric.metrics", "cost")
# budget columns added where rows differ (wall time always differs: shown only on request)
AUTO_BUDGET = ("epochs", "max_epochs", "queries_per_epoch", "batch_size", "images_seen", "image_size",
               "pretrained", "device")  # fmt: skip


def seed_means(records: Sequence[Record]) -> list[Record]:
    """Runs that differ only in their seed merged into one record each: numbers under ``metrics``,
    ``asymmetric.metrics`` and ``cost`` become ``MeanStd`` (mean ± sample std over the seeds); the
    merged record's ``seeds`` lists them. A run alone stays as it is (``seeds``: its seed)."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(settings_key(record), []).append(record)
    merged = []
    for runs in groups.values():
        runs = sorted(runs, key=lambda r: str(r.get("created", "")))
        data = copy.deepcopy(runs[-1].data)
        data["seeds"] = sorted({r.get("seed") for r in runs if r.get("seed") is not None}) or None
        if len(runs) > 1:
            for section in MEANED:
                target = Record(runs[-1].run_dir, data).get(section)
                if not isinstance(target, dict):
                    continue
                for key, value in target.items():
                    values = [r.get(f"{section}.{key}") for r in runs]
                    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and numbers:
                        target[key] = MeanStd(numbers)
            data["run_id"] = f"{len(runs)} runs"
        merged.append(Record(runs[-1].run_dir, data))
    return merged


def differing(rows: Sequence[Row], keys: Sequence[str]) -> list[str]:
    """The columns of ``keys`` whose values differ between trained rows that have them."""
    out = []
    for key in keys:
        values = {json.dumps(COLUMNS[key].value(r.first)) for r in rows if r.first.get("budget")}
        if len(values) > 1:
            out.append(key)
    return out


def budget_warnings(rows: Sequence[Row]) -> list[str]:
    """One line when trained rows had different budgets or devices; one when a trained row's budget is
    unknown (a record from before budgets were recorded)."""
    trained = [r for r in rows if r.first.get("trained")]
    lines = []
    unknown = [r for r in trained if not r.first.get("budget")]
    if unknown and len(trained) > 1:
        lines.append(
            f"warning: {len(unknown)} trained row(s) have no recorded budget (older records): "
            "equal training budgets cannot be checked"
        )
    keys = differing(trained, BUDGET_FIELDS)
    if keys:
        parts = []
        for key in keys:
            column = COLUMNS[key]
            values = sorted({column.text(column.value(r.first)) for r in trained if r.first.get("budget")})
            parts.append(f"{column.header}: {' vs '.join(values)}")
        lines.append(
            f"warning: rows were trained with different budgets or devices ({'; '.join(parts)}): "
            "not like for like"
        )
    return lines


@dataclass
class Table:
    datasets: list[str]
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = dataclasses.field(default_factory=list)  # lines under the table (warnings)

    def cells(self) -> list[tuple[Column, str | None]]:
        """(column, dataset) pairs in display order; dataset is None for shared columns."""
        shared = [c for c in self.columns if not c.per_dataset]
        grouped = [c for c in self.columns if c.per_dataset]
        lead = [c for c in shared if c.key in IDENTITY]
        tail = [c for c in shared if c not in lead]
        pairs = [(c, None) for c in lead]
        pairs += [(c, d) for d in self.datasets for c in grouped]
        return pairs + [(c, None) for c in tail]

    def value(self, row: Row, column: Column, dataset: str | None):
        if column.key == "weights":
            trained = row.first.get("trained")
            return None if trained is None else ("trained" if trained else "untrained")
        return column.value(row.runs.get(dataset) if dataset else row.first)

    def header(self, column: Column, dataset: str | None, sep: str = " ") -> str:
        return f"{dataset}{sep}{column.header}" if dataset and len(self.datasets) > 1 else column.header

    def key(self, column: Column, dataset: str | None) -> str:
        return f"{dataset}/{column.key}" if dataset and len(self.datasets) > 1 else column.key

    def best(self) -> set[tuple[int, str, str | None]]:
        """(row index, column key, dataset) of each column's best value."""
        marks = set()
        for column, dataset in self.cells():
            values = [(i, self.value(r, column, dataset)) for i, r in enumerate(self.rows)]
            values = [(i, v) for i, v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if column.better is None or len({v for _, v in values}) < 2:  # nothing to tell apart
                continue
            target = (max if column.better == "max" else min)(v for _, v in values)
            marks |= {(i, column.key, dataset) for i, v in values if v == target}
        return marks


def build_table(
    records: Sequence[Record],
    columns: Sequence[str] = COMPARE,
    best: bool = True,
    sort: str | None = "R@1",
    seed_mean: bool = False,
    budget: bool = True,
) -> Table:
    """The table of ``records``; ``sort`` None keeps their order. ``seed_mean``: runs that differ only
    in their seed become one row (mean ± std). ``budget``: add the training-budget columns whose values
    differ between the rows, and a warning line when trained rows had different budgets or devices."""
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise ConfigError(f"unknown column {unknown[0]!r}; valid: {', '.join(COLUMNS)}")
    lookup = {k.lower(): k for k in COLUMNS}
    if sort is not None and sort.lower() not in lookup:
        raise ConfigError(f"--sort {sort!r} is not a column; valid: {', '.join(COLUMNS)}")
    if seed_mean:
        records = seed_means(records)
    group = protocol_groups(records)
    datasets = sorted({group(r) for r in records})
    rows = select(records, best, group)
    columns = list(columns)
    notes = []
    if budget:
        extra = differing(rows, AUTO_BUDGET)
        extra += ["seeds"] if seed_mean and "seeds" not in columns else []
        at = columns.index("date") if "date" in columns else len(columns)
        columns[at:at] = [k for k in extra if k not in columns]
        notes = budget_warnings(rows)
    table = Table(datasets, [COLUMNS[c] for c in columns], rows, notes)
    if sort is None:
        return table
    by = COLUMNS[lookup[sort.lower()]]
    first = next((d for d in datasets if any(d in r.runs for r in table.rows)), None)

    def sort_key(row: Row):
        value = table.value(row, by, first if by.per_dataset else None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, -value if by.better != "min" else value)
        return (0 if value is not None else 1, str(value))

    table.rows.sort(key=sort_key)
    return table
