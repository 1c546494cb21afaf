"""Leaderboards from run records: the rows and columns ``compare`` and ``ablate`` show (``render.py``
writes them out in five formats).

Rows are runs (``--all``) or one run per setting, chosen by a rule (``selection.py``: by default the best
validation R@1 of trained runs, the most recent evaluation-only run), merged across datasets, so that
several datasets become one column group each, as in the tables of VPR papers. Runs that differ only in
their seed can become one row (mean ± std); the training-budget columns whose values differ are added,
with a warning line, and so is the device where rows were measured on different machines. A value a
record does not have (an older schema) shows as "—".
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vpr_bench.errors import ConfigError
from vpr_bench.results.published import difference
from vpr_bench.results.selection import (
    BUDGET_FIELDS,
    MeanStd,
    Row,
    device_of,
    is_trained_run,
    protocol_groups,
    recipe_of,
    seed_means,
    select,
    selection_notes,
)
from vpr_bench.results.store import Record

MISSING = "—"


def pretrained_value(per_backbone: dict) -> bool | str:
    """A budget's ``pretrained`` per backbone as one comparable value: True/False where every backbone
    agrees (so that it equals the single bool of records before it was kept per backbone), else the
    list "resnet18=True, vit_small_patch16_224=False"."""
    states = {bool(v) for v in per_backbone.values()}
    if len(states) == 1:
        return states.pop()
    return ", ".join(f"{name}={bool(v)}" for name, v in sorted(per_backbone.items()))


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
        if self.key.startswith("diff_R@"):  # measured − published (``compare --published``)
            return difference(record, int(self.key.rpartition("@")[2]))
        if self.key == "device":
            return device_of(record)
        if self.key == "pretrained" and isinstance(value, dict):
            return pretrained_value(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and self.scale != 1.0:
            return value / self.scale
        return value

    def text(self, value) -> str:
        if value is None:
            return MISSING
        if getattr(value, "mark", ""):  # a published figure quoted by others: †
            return self.fmt.format(float(value)) + value.mark
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
        # the options that make a model differ from the paper's (e.g. balance_parts=true); "" for none
        Column("variant", "variant", "variant", priority=2),
        # how a trained row was trained: triplet (mined tuples) or a place recipe (gsv), where rows differ
        Column("recipe", "recipe", "budget.recipe", priority=2),
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
        Column("lr", "lr", "budget.lr", "{:g}", priority=4),
        Column("weight_decay", "weight decay", "budget.weight_decay", "{:g}", priority=4),
        Column("negatives", "negatives", "budget.negatives", priority=4),
        Column("images_seen", "images seen", "budget.images_seen", priority=4),
        Column("places_per_batch", "places/batch", "budget.places_per_batch", priority=4),  # place batches
        Column("images_per_place", "images/place", "budget.images_per_place", priority=4),
        Column("precision", "precision", "budget.precision", priority=4),
        Column("image_size", "image size", "budget.image_size", priority=4),
        Column("pretrained", "pretrained", "budget.pretrained", priority=4),
        Column("device", "device", "cost.device", priority=4),  # or the budget's: ``device_of``
        Column("train_s", "train s", "budget.wall_s", "{:.0f}", None, 6),
        Column("seeds", "seeds", "seeds", priority=5),
        # a published figure beside the measured one (``compare --published``: ``results/published.py``)
        Column("pub_R@1", "pub R@1", "published.R@1", "{:.1f}", None, 1, True),
        Column("diff_R@1", "Δ R@1", "published.R@1", "{:+.1f}", None, 1, True),
        Column("pub_R@5", "pub R@5", "published.R@5", "{:.1f}", None, 3, True),
        Column("diff_R@5", "Δ R@5", "published.R@5", "{:+.1f}", None, 3, True),
        Column("published", "published", "published.note", priority=2, per_dataset=True),
    )
}
COMPARE = (
    "method", "plugin", "kd_loss", "backbone", "preset", "R@1", "R@5", "R@10", "R@20",
    "dim", "params_M", "gflops", "ms_image", "ms_query", "peak_mb", "date", "run",
)  # fmt: skip
# columns before the groups
IDENTITY = ("method", "variant", "recipe", "plugin", "kd_loss", "backbone", "preset", "weights")
ABLATION = ("kd_loss", "R@1", "R@5", "R@10", "asym_R@1", "params_M", "ms_image", "run")
# ``compare --published``: the published figures after the Recall@N columns
COMPARE_PUBLISHED = (
    *COMPARE[: COMPARE.index("dim")], "pub_R@1", "diff_R@1", "pub_R@5", "diff_R@5", "published",
    *COMPARE[COMPARE.index("dim") :],
)  # fmt: skip


RECALL_COLUMNS = ("R@1", "R@5", "R@10", "R@20")


def _folded(name: str) -> str:
    """A metric name as ``--metric`` matches it: ``auc_pr``, ``AUC-PR`` and ``aucpr`` are one."""
    return re.sub(r"[^a-z0-9@]", "", name.lower())


def metric_column(name: str, records: Sequence[Record], condition: str | None = None) -> Column:
    """The per-dataset column of a metric the records hold (``--metric auc_pr`` finds ``AUC-PR``; all
    metrics are better higher), or of its value on one ``condition``'s queries (``--breakdown``)."""
    recorded = sorted({k for r in records for k in (r.get("metrics") or {})})
    found = next((n for n in recorded if _folded(n) == _folded(name)), None)
    if found is None:
        raise ConfigError(f"--metric {name!r}: no record holds it; recorded: {', '.join(recorded) or 'none'}")
    fmt = "{:.1f}" if found.startswith("R@") else "{:.3f}"  # R@N, R@100P in %; the others in [0, 1]
    if condition is None:
        return COLUMNS.get(found) or Column(found, found, f"metrics.{found}", fmt, "max", 0, True)
    field = f"metrics_by_condition.{condition}.{found}"
    return Column(f"{condition}:{found}", f"{condition} {found}", field, fmt, "max", 0, True)


def conditions_in(records: Sequence[Record]) -> list[str]:
    """The conditions (MSLS subtasks) the records break their metrics down by, in recorded order."""
    return list(dict.fromkeys(c for r in records for c in (r.get("metrics_by_condition") or {})))


def metric_columns(
    columns: list[Column], records: Sequence[Record], metric: str | None, breakdown: bool
) -> list[Column]:
    """``columns`` with ``metric``'s column and, with ``breakdown``, one column per condition of it
    (``metric`` or R@1), after the Recall@N columns."""
    added = [] if metric is None else [metric_column(metric, records)]
    if breakdown:
        added += [metric_column(metric or "R@1", records, c) for c in conditions_in(records)]
    added = [c for c in added if c not in columns]
    recall = [i for i, c in enumerate(columns) if c.key in RECALL_COLUMNS]
    at = recall[-1] + 1 if recall else len(columns)
    return columns[:at] + added + columns[at:]


# budget columns added where rows differ (wall time always differs: shown only on request)
AUTO_BUDGET = ("epochs", "max_epochs", "queries_per_epoch", "batch_size", "lr", "weight_decay", "negatives",
               "images_seen", "image_size", "pretrained", "places_per_batch", "images_per_place",
               "precision")  # fmt: skip


def differing(rows: Sequence[Row], keys: Sequence[str]) -> list[str]:
    """The columns of ``keys`` whose values differ between trained rows that record them (a field an
    older record lacks is unknown, not a difference)."""
    out = []
    for key in keys:
        values = [COLUMNS[key].value(r.first) for r in rows if r.first.get("budget")]
        if len({json.dumps(v) for v in values if v is not None}) > 1:
            out.append(key)
    return out


def budget_warnings(rows: Sequence[Row]) -> list[str]:
    """One line when trained rows had different budgets; one when a trained row's budget is unknown (a
    record from before budgets were recorded)."""
    trained = [r for r in rows if is_trained_run(r.first)]  # not published weights evaluated here
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
            values = [column.value(r.first) for r in trained if r.first.get("budget")]
            texts = sorted({column.text(v) for v in values if v is not None})
            parts.append(f"{column.header}: {' vs '.join(texts)}")
        lines.append(
            f"warning: rows were trained with different budgets ({'; '.join(parts)}): not like for like"
        )
    return lines


def devices(rows: Sequence[Row]) -> list[str]:
    """The machines the rows' runs computed on (trained and evaluation-only alike), where recorded."""
    return sorted({d for row in rows for run in row.runs.values() if (d := device_of(run)) is not None})


def device_warnings(rows: Sequence[Row]) -> list[str]:
    """One line when the rows come from different machines: their timings and memory do not compare."""
    machines = devices(rows)
    if len(machines) < 2:
        return []
    return [
        f"warning: rows come from different devices ({' vs '.join(machines)}): ms/image, ms/query, "
        "memory and training time are not comparable across them"
    ]


@dataclass
class Table:
    datasets: list[str]
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = dataclasses.field(default_factory=list)  # lines under the table (rule, warnings)

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
    rule: str = "val",
    metric: str | None = None,
    breakdown: bool = False,
) -> Table:
    """The table of ``records``; ``sort`` None keeps their order (or, with ``metric``, ranks by it).
    ``best``: one row per setting, the run ``rule`` picks (``selection.RULES``), said in a line under the
    table. ``seed_mean``: runs that differ only in their seed (on one machine) become one row (mean ±
    std). ``budget``: add the training-budget columns (and the device) whose values differ between the
    rows, each with a warning line. ``metric``: add any recorded metric's column (``--metric``);
    ``breakdown``: its (or R@1's) value per condition of the queries (MSLS's subtasks)."""
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
    rows = select(records, best, group, rule)
    columns = list(columns)
    notes = selection_notes(rows, rule, seed_mean) if best else []
    if "method" in columns and "variant" not in columns and any(r.first.get("variant") for r in rows):
        columns.insert(columns.index("method") + 1, "variant")  # a deviation from the paper is shown
    if "method" in columns and "recipe" not in columns and len({recipe_of(r.first) for r in rows} - {""}) > 1:
        at = columns.index("variant" if "variant" in columns else "method") + 1
        columns.insert(at, "recipe")  # rows trained by different recipes say which is which
    if budget:
        extra = differing(rows, AUTO_BUDGET) + (["device"] if len(devices(rows)) > 1 else [])
        extra += ["seeds"] if seed_mean and "seeds" not in columns else []
        at = columns.index("date") if "date" in columns else len(columns)
        columns[at:at] = [k for k in extra if k not in columns]
        notes += budget_warnings(rows) + device_warnings(rows)
    table = Table(
        datasets, metric_columns([COLUMNS[c] for c in columns], records, metric, breakdown), rows, notes
    )
    if sort is None and metric is None:
        return table
    by = COLUMNS[lookup[sort.lower()]] if sort is not None else metric_column(metric, records)
    first = next((d for d in datasets if any(d in r.runs for r in table.rows)), None)

    def sort_key(row: Row):
        value = table.value(row, by, first if by.per_dataset else None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, -value if by.better != "min" else value)
        return (0 if value is not None else 1, str(value))

    table.rows.sort(key=sort_key)
    return table
