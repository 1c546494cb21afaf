"""``vpr-bench metrics RUN``: a finished run's metrics recomputed from its saved ranking
(``predictions.npz``: top-k database rows and distances per evaluated query) and its split's ground truth
— no descriptor is extracted again — and merged into its ``metrics.json`` atomically, for records made
before a metric existed. The run's ``config.json`` says which dataset, split and protocol to read."""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vpr_bench._io import atomic_write_json
from vpr_bench.config import RunConfig
from vpr_bench.datasets import load_split
from vpr_bench.errors import VPRBenchError
from vpr_bench.evaluation.scoring import (
    Scores,
    conditions_of,
    metric_inputs,
    protocol_fields,
    score,
    soft_ground_truth,
)
from vpr_bench.results.predictions import FILE as PREDICTIONS


@dataclass(frozen=True)
class SavedRun:
    """A finished run as its folder keeps it."""

    run_dir: Path
    record: dict  # metrics.json
    config: RunConfig  # config.json
    query_index: np.ndarray  # (Q,) the split's query rows evaluated
    indices: np.ndarray  # (Q, K) ranked database rows
    distances: np.ndarray  # (Q, K) float32 (float16 in records before the precision-recall metrics)


@dataclass(frozen=True)
class Rescored:
    added: list[str]  # metric names the record did not have
    kept: list[str]  # recomputed to the value it had
    changed: list[tuple[str, float, float]]  # recomputed to another value: (name, recorded, now)


def read_run(run_dir: Path) -> SavedRun:
    """The run in ``run_dir``; a folder that is not a finished run is refused in one line."""
    try:
        record = json.loads((run_dir / "metrics.json").read_text())
        config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        with np.load(run_dir / PREDICTIONS) as saved:
            arrays = saved["query_index"], saved["predictions"], saved["distances"]
    except (OSError, ValueError, KeyError) as exc:
        raise VPRBenchError(
            f"metrics: {run_dir} is not a finished run folder with {PREDICTIONS} ({exc})"
        ) from None
    query_index, indices, distances = arrays
    return SavedRun(
        run_dir, record, config, query_index.astype(np.int64), indices.astype(np.int64), distances
    )


def scored_inputs(run: SavedRun, data_root: str | None = None):
    """The run's ``MetricInputs``, condition masks and soft positives, from its split read afresh
    (``data_root``: where the dataset is now, else where the run read it)."""
    data = replace(run.config.data, data_root=data_root) if data_root else run.config.data
    protocol = run.record.get("protocol") or {}
    _, split = load_split(data, protocol.get("split") or run.config.eval.split)
    recorded = (protocol.get("name"), protocol.get("num_database"), protocol.get("num_queries"))
    found = (split.protocol_name, split.num_database, split.num_queries)
    if any(r is not None and r != f for r, f in zip(recorded, found, strict=True)):
        raise VPRBenchError(
            f"metrics: {run.run_dir}: the split read now ({found[0]}, {found[1]} database images, "
            f"{found[2]} queries) is not the run's ({recorded[0]}, {recorded[1]}, {recorded[2]}); "
            "pass --data-root of the dataset it was evaluated on"
        )
    gt = split.ground_truth(data.pos_radius).subset(run.query_index)
    soft = soft_ground_truth(split, data.pos_radius, run.config.eval.soft_radius)
    recall_at = run.config.eval.recall_at
    inputs = metric_inputs(run.indices, run.distances, gt, soft, run.query_index, split, recall_at)
    return inputs, conditions_of(split, run.query_index), soft


def merged(record: dict, scores: Scores, protocol: dict, names: tuple[str, ...], dtype: str) -> dict:
    """``record`` with the recomputed values, curves and per-condition values in, and a note of it."""
    out = copy.deepcopy(record)
    out["metrics"] = {**(record.get("metrics") or {}), **scores.values}
    out["curves"] = {**(record.get("curves") or {}), **scores.curves}
    by_condition = dict(record.get("metrics_by_condition") or {})
    for condition, values in scores.by_condition.items():
        by_condition[condition] = {**by_condition.get(condition, {}), **values}
    out["metrics_by_condition"] = by_condition
    out["protocol"] = {**(record.get("protocol") or {}), **protocol}
    note = {
        "by": "vpr-bench metrics",
        "at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "metrics": list(names),
        "distances": dtype,  # float16: a record from before the precision-recall metrics
    }
    out["metrics_recomputed"] = [*(record.get("metrics_recomputed") or []), note]
    return out


def compared(before: dict, after: dict) -> Rescored:
    added = [k for k in after if k not in before]
    same = [k for k in after if k in before and np.isclose(before[k], after[k], rtol=1e-6, atol=1e-9)]
    changed = [(k, before[k], after[k]) for k in after if k in before and k not in same]
    return Rescored(added, same, changed)


def rescore(run_dir: str | Path, names: tuple[str, ...] = ("all",), data_root: str | None = None) -> Rescored:
    """Recompute ``names`` (``all``: every registered metric) for the run in ``run_dir`` and write them
    into its ``metrics.json`` (atomically: a reader sees the old record or the new one)."""
    run = read_run(Path(run_dir))
    inputs, conditions, soft = scored_inputs(run, data_root)
    scores = score(inputs, names, conditions)
    record = merged(run.record, scores, protocol_fields(scores, soft), names, str(run.distances.dtype))
    atomic_write_json(run.run_dir / "metrics.json", record)
    return compared(run.record.get("metrics") or {}, scores.values)
