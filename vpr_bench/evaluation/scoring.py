"""Scoring a ranking: the registered metric routines ``--metrics`` selects (``metrics.py``: Recall@N,
MRR@k, mAP@k; ``pr.py``: precision–recall, Extended Precision), over every evaluated query and, where
the split declares conditions (MSLS's subtasks), over each condition's queries.

A metric routine takes one ``MetricInputs`` and returns a ``MetricResult``; a plugin registers its own
with ``api.register_metric(name, description)``. The engine calls ``score`` after the search, and
``vpr-bench metrics RUN`` calls it again on a run's saved ``predictions.npz``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vpr_bench.config import check_setting
from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.datasets.split import Split
from vpr_bench.errors import ConfigError
from vpr_bench.registry import METRICS, Entry

ALL = "all"
ALWAYS = "recall"  # Recall@N: the tables' figure and early stopping's, computed whatever --metrics says


@dataclass(frozen=True)
class MetricInputs:
    """What every metric routine receives: the ranking of each evaluated query and its ground truth."""

    indices: np.ndarray  # (Q, K) ranked database rows, best first; -1: no result
    distances: np.ndarray  # (Q, K) their squared L2 distances, ascending
    positives: GroundTruth  # hard positives of each of the Q queries
    soft_positives: GroundTruth | None = None  # a wider set that is not penalised (VPR_Tutorial's GTsoft)
    recall_at: tuple[int, ...] = (1, 5, 10, 20)  # the N of Recall@N, the k of mAP@k
    database_groups: np.ndarray | None = None  # (num_database,) panorama of each image (one rank each)

    @property
    def num_database(self) -> int:
        return self.positives.num_database

    @property
    def num_queries(self) -> int:
        return len(self.indices)

    def subset(self, rows: np.ndarray) -> MetricInputs:
        """The inputs of the queries ``rows`` only (a condition's)."""
        soft = None if self.soft_positives is None else self.soft_positives.subset(rows)
        return MetricInputs(
            self.indices[rows],
            self.distances[rows],
            self.positives.subset(rows),
            soft,
            self.recall_at,
            self.database_groups,
        )


@dataclass(frozen=True)
class MetricResult:
    """Named values (a value that is undefined on these queries is left out) and, optionally, a curve
    the record keeps under ``curves.<metric>`` (lists of numbers, for plots)."""

    values: dict[str, float]
    curve: dict | None = None


@dataclass
class Scores:
    """What ``score`` found: the values and curves over every query, and the values per condition."""

    values: dict[str, float]
    curves: dict[str, dict] = field(default_factory=dict)
    by_condition: dict[str, dict[str, float]] = field(default_factory=dict)
    condition_sizes: dict[str, int] = field(default_factory=dict)  # evaluated queries per condition


def selected_metrics(names: Sequence[str]) -> list[Entry]:
    """The routines ``names`` selects (``all``: every registered one), Recall@N always among them."""
    check_setting("eval.metrics", tuple(names))  # an unknown name: one line listing the registered ones
    chosen = [e.name for e in METRICS.entries()] if ALL in names else names
    wanted = dict.fromkeys([ALWAYS, *chosen])  # Recall@N first: the record's first figures
    return [METRICS.get(name) for name in wanted]


def compute(inputs: MetricInputs, entries: Sequence[Entry]) -> tuple[dict[str, float], dict[str, dict]]:
    """Each routine's values (merged) and curves (by routine name)."""
    values: dict[str, float] = {}
    curves: dict[str, dict] = {}
    for entry in entries:
        result = entry.builder(inputs)
        if isinstance(result, dict):  # a routine may return its values alone
            result = MetricResult(result)
        values.update({k: float(v) for k, v in result.values.items()})
        if result.curve is not None:
            curves[entry.name] = result.curve
    return values, curves


def score(
    inputs: MetricInputs, names: Sequence[str], conditions: dict[str, np.ndarray] | None = None
) -> Scores:
    """The selected metrics over every query, then over each condition's queries (``conditions``: a
    (Q,) bool mask per condition over the evaluated queries; curves only for the whole set)."""
    entries = selected_metrics(names)
    values, curves = compute(inputs, entries)
    scores = Scores(values, curves)
    for condition, mask in (conditions or {}).items():
        rows = np.flatnonzero(mask)
        scores.condition_sizes[condition] = int(len(rows))
        if len(rows):
            scores.by_condition[condition] = compute(inputs.subset(rows), entries)[0]
    return scores


def conditions_of(split: Split, query_index: np.ndarray) -> dict[str, np.ndarray]:
    """The split's per-query condition masks (MSLS: s2w, w2s, …) over the evaluated queries."""
    return {name: np.asarray(mask, dtype=bool)[query_index] for name, mask in split.conditions.items()}


def soft_ground_truth(
    split: Split, pos_radius: float | None, soft_radius: float | None
) -> GroundTruth | None:
    """The soft positives (``--soft-radius``, else the protocol's own ``split.soft_radius``): database
    images within the wider radius, in the split's unit (metres, or frames); None where there is none."""
    radius = soft_radius if soft_radius is not None else split.soft_radius
    if radius is None:
        return None
    if split.explicit_ground_truth is not None:
        raise ConfigError(
            f"--soft-radius {radius:g}: {split.dataset} has ground-truth lists, not coordinates; "
            "leave --soft-radius out"
        )
    hard = pos_radius or split.pos_radius
    if radius < hard:
        raise ConfigError(f"--soft-radius {radius:g} must be ≥ the positive radius {hard:g}")
    return split.ground_truth(radius)


def metric_inputs(
    indices: np.ndarray,
    distances: np.ndarray,
    positives: GroundTruth,
    soft: GroundTruth | None,
    query_index: np.ndarray,
    split: Split,
    recall_at: tuple[int, ...],
) -> MetricInputs:
    """``MetricInputs`` of the evaluated queries ``query_index`` (``soft``: over all the split's)."""
    return MetricInputs(
        indices,
        np.asarray(distances, dtype=np.float32),
        positives,
        None if soft is None else soft.subset(query_index),
        tuple(recall_at),
        split.database_groups,
    )


def protocol_fields(scores: Scores, soft: GroundTruth | None) -> dict:
    """What the record's protocol says of the scoring: the soft radius, the queries of each condition."""
    fields: dict = {"soft_pos_radius": None if soft is None else soft.radius}
    if scores.condition_sizes:
        fields["conditions"] = dict(scores.condition_sizes)
        fields["conditions_scored_against"] = "the whole database"
    return fields
