"""Which runs a leaderboard shows: one run per setting chosen by a rule, seed means, and the machine a
run was measured on.

A setting is a (method, KD loss, backbone, preset, trained or evaluation-only) on one dataset. The rule
that picks its row (``RULES``) never looks at the test split unless asked: a trained run's row is the run
with the best validation R@1 (the split training stopped on), an evaluation-only run's the most recent
one. Picking the best test R@1 among runs rewards the luckiest draw, so ``test`` says so under the table.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from vpr_bench.results.store import Record

# the rules ``compare --select`` offers: name → what the line under the table says
RULES = {
    "val": "best validation R@1 per setting (trained), most recent (evaluation-only)",
    "recent": "most recent run per setting",
    "test": "best test R@1 per setting: selected on test (optimistic: the luckiest test draw wins)",
}
# what a trained run was given (the record's "budget"): rows differing here are not like for like
BUDGET_FIELDS = ("max_epochs", "queries_per_epoch", "batch_size", "lr", "weight_decay", "negatives",
                 "image_size", "pretrained", "places_per_batch", "images_per_place", "precision")  # fmt: skip


class MeanStd(float):
    """A seed mean that remembers its spread: sorts and compares as the mean, prints "mean ± std"."""

    def __new__(cls, values: Sequence[float]):
        self = super().__new__(cls, statistics.fmean(values))
        self.std = statistics.stdev(values) if len(values) > 1 else 0.0  # sample std over seeds
        self.n = len(values)
        return self


@dataclass
class Row:
    runs: dict[str, Record]  # dataset → the run shown for it
    several_seeds: bool = False  # the rule picked one of several seeds of the setting

    @property
    def first(self) -> Record:
        return next(iter(self.runs.values()))


def is_trained_run(record: Record) -> bool:
    """A run that trained (``run``), as opposed to one that only evaluated weights (``eval``)."""
    sections = (record.get("training"), record.get("budget"))
    return record.get("command") == "run" or any(isinstance(s, dict) for s in sections)


def recipe_of(record: Record) -> str:
    """How a trained run was trained (``budget.recipe``; records before recipes: triplet); "" for none."""
    return str(record.get("budget.recipe") or "triplet") if is_trained_run(record) else ""


def device_of(record: Record) -> str | None:
    """The machine a run computed on: the card's or CPU's name (``cost.device``; records before it held a
    name: the training budget's device, else the bare "cpu"/"cuda" they recorded)."""
    cost, budget = record.get("cost.device"), record.get("budget.device")
    if isinstance(cost, str) and not re.fullmatch(r"(cpu|cuda|mps)(:\d+)?", cost):
        return cost
    return budget or cost


def _rank(rule: str):
    """The sort key under ``rule`` (the highest wins; the latest on a tie)."""

    def number(value) -> float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else -1.0

    def rank(record: Record) -> tuple:
        created = str(record.get("created", ""))
        if rule == "test":
            return (number(record.get("metrics.R@1")), created)
        if rule == "val" and is_trained_run(record):
            return (number(record.get("training.best_val_R@1")), created)
        return (created,)

    return rank


def select(records: Sequence[Record], best: bool = True, group=None, rule: str = "val") -> list[Row]:
    """One row per run, or (``best``) one per setting with the run ``rule`` picks (``RULES``) on each
    dataset. ``group``: a record's column group (default: its dataset)."""
    group = group or (lambda r: str(r.get("dataset")))
    if not best:
        return [Row({group(r): r}) for r in records]
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; valid: {', '.join(RULES)}")
    settings: dict[tuple, dict[str, list[Record]]] = {}
    for record in records:
        # a batch-dependent model's batch size is part of what it computes (None for every other model)
        fields = (
            "method",
            "variant",
            "distillation.kd_loss",
            "backbone",
            "preset",
            "protocol.batching.batch_size",
        )
        identity = tuple(str(record.get(f) or "") for f in fields) + (recipe_of(record),)
        kind = "trained" if is_trained_run(record) else "evaluation-only"
        settings.setdefault((*identity, kind), {}).setdefault(group(record), []).append(record)
    rows = []
    for by_dataset in settings.values():
        runs = {dataset: max(candidates, key=_rank(rule)) for dataset, candidates in by_dataset.items()}
        seeds = [{r.get("seed") for r in candidates} - {None} for candidates in by_dataset.values()]
        rows.append(Row(runs, several_seeds=any(len(s) > 1 for s in seeds)))
    return rows


def selection_notes(rows: Sequence[Row], rule: str, seed_mean: bool) -> list[str]:
    """The line saying which run each row is, and a hint where a row is one seed of several."""
    lines = [f"rows: {RULES[rule]}" + ("; seeds merged: mean ± std" if seed_mean else "")]
    several = sum(r.several_seeds for r in rows)
    if several and not seed_mean:
        lines.append(f"hint: {several} row(s) show one of several seeds; --seed-mean shows mean ± std")
    return lines + batching_notes(rows)


def batching_notes(rows: Sequence[Row]) -> list[str]:
    """One line per batch-dependent row: its descriptors depend on the other images of their batch."""
    lines = []
    for row in rows:
        batching = row.first.get("protocol.batching") or {}
        if batching.get("batch_dependent"):
            how = (
                "one image at a time"
                if batching.get("one_image_at_a_time")
                else (
                    f"batches of {batching.get('batch_size')}, database and queries "
                    f"{batching.get('database_and_queries', 'separately')}"
                )
            )
            lines.append(f"batch-dependent: {row.first.get('method')} ({how}); another batching changes it")
    return lines


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


# settings that do not make two runs different experiments: the seed, where results go. The machine is
# not among them: it is part of the key on its own (``device_of``), by name, not by --device
IGNORED_SETTINGS = ("argv", "resume_argv", "environment", "record_extra", "seed", "out", "quiet")


def settings_key(record: Record) -> str:
    """A fingerprint of everything a run was configured with except its seed (and output folder, teacher
    run), plus the machine it ran on: runs with one key differ only in their seed."""
    try:
        config = json.loads((record.run_dir / "config.json").read_text())
    except (OSError, ValueError):
        config = {"budget": {k: v for k, v in (record.get("budget") or {}).items() if k in BUDGET_FIELDS}}
    config = {k: v for k, v in config.items() if k not in IGNORED_SETTINGS}
    kept = (("eval", "save_descriptors"), ("eval", "saved_descriptor_dtype"))  # files kept, not results
    kept += (("data", "image_cache"),)  # where decoded images are kept, not what they are
    for section, name in (("distill", "teacher"), ("eval", "device"), ("eval", "num_workers"), *kept):
        if isinstance(config.get(section), dict):
            config[section] = {k: v for k, v in config[section].items() if k != name}
    identity = [record.get(f) for f in ("dataset", "protocol.name", "method", "distillation.kd_loss")]
    identity.append(recipe_of(record))
    text = json.dumps([identity, device_of(record), config], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


MEANED = ("metrics", "asymmetric.metrics", "cost", "training")


def seed_means(records: Sequence[Record]) -> list[Record]:
    """Runs that differ only in their seed, on one machine, merged into one record each: numbers under
    ``metrics``, ``asymmetric.metrics``, ``cost``, ``training`` and each condition's metrics become
    ``MeanStd`` (mean ± sample std over the seeds); the merged record's ``seeds`` lists them. A run alone
    stays as it is (``seeds``: its seed)."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(settings_key(record), []).append(record)
    merged = []
    for runs in groups.values():
        runs = sorted(runs, key=lambda r: str(r.get("created", "")))
        data = copy.deepcopy(runs[-1].data)
        data["seeds"] = sorted({r.get("seed") for r in runs if r.get("seed") is not None}) or None
        if len(runs) > 1:
            conditions = [f"metrics_by_condition.{c}" for c in data.get("metrics_by_condition") or {}]
            for section in (*MEANED, *conditions):
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
