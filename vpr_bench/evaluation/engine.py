"""One evaluation, start to end: describe (descriptors) → search (exact or faiss) → score (metrics), and
the record's cost and protocol sections (``sections.py``). Writing ``predictions.npz`` is the caller's
(``vpr_bench.results.predictions``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vpr_bench import distributed
from vpr_bench.config import DataConfig, RunConfig
from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.datasets.images import NATIVE, data_transform, first_image_size
from vpr_bench.datasets.split import Split
from vpr_bench.errors import VPRBenchError
from vpr_bench.evaluation.descriptors import as_array, batching, extract
from vpr_bench.evaluation.matching import Predictions, collapse_groups, database_dtype, index_spec, search
from vpr_bench.evaluation.memory import PhaseMemory
from vpr_bench.evaluation.scoring import (
    Scores,
    conditions_of,
    metric_inputs,
    protocol_fields,
    score,
    soft_ground_truth,
)
from vpr_bench.evaluation.scratch import scratch_folder
from vpr_bench.evaluation.sections import cost_section, protocol_section, ranked_items
from vpr_bench.evaluation.sharded import extract_for_main, share_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Descriptors:
    """A split's L2-normalised descriptors, database and queries in one metric space."""

    database: np.ndarray | torch.Tensor  # (num_database, D); a tensor where extracted on a GPU for it
    queries: np.ndarray  # (num_queries, D)


@dataclass
class Evaluation:
    """What one evaluation found; ``sections()`` is what a run record holds of it."""

    metrics: dict[str, float]
    recall_curve: list[float]
    cost: dict
    protocol: dict
    predictions: Predictions
    query_descriptors: np.ndarray  # (num_queries, D): every query's, for a second (asymmetric) evaluation
    curves: dict = field(default_factory=dict)  # a metric's curve by its name (``pr``: precision, recall)
    metrics_by_condition: dict = field(default_factory=dict)  # condition → its queries' metrics

    def sections(self) -> dict:
        return {
            "metrics": self.metrics,
            "recall_curve": self.recall_curve,
            "curves": self.curves,
            "metrics_by_condition": self.metrics_by_condition,
            "cost": self.cost,
            "protocol": self.protocol,
        }


def evaluate(
    model: nn.Module | None,
    split: Split,
    cfg: RunConfig,
    device: torch.device,
    *,
    run_dir: Path | None = None,
    database_model: nn.Module | None = None,
    count_flops: bool = True,
    time_model: bool = True,
    given: dict[str, np.ndarray] | None = None,
    keep: Callable[[np.ndarray, np.ndarray], None] | None = None,
    model_cost: dict | None = None,
    sharded: bool = False,
) -> Evaluation | None:
    """Metrics, cost figures and top-k predictions of ``model`` on ``split``.

    ``run_dir``: where the database descriptors are spilled while they are searched (a temporary folder
    inside it; default: the system's). ``database_model``: asymmetric retrieval — the database described
    by this model (e.g. a teacher on a server), the queries by ``model`` (e.g. a student on the robot);
    both must share one metric space. Cost figures are the query model's. ``count_flops`` False skips the
    FLOP count (an extra traced forward pass) and ``time_model`` False the timing pass (``time_forward``:
    a few forwards of a fixed synthetic batch) where only the metrics are wanted, e.g. each epoch's
    validation; ms/image is then None. Peak memory is measured per phase (``PhaseMemory``): descriptor
    extraction and search. ``given``: descriptors already computed by these very models for this split
    ("database", "queries"), used instead of extracting them again (a student's queries from its own
    evaluation, a frozen teacher's stored database); with both given, ``model`` may be None (descriptors
    a run kept: ``model_cost`` then holds its model's cost figures). ``keep(database, queries)`` is called
    while the descriptors exist (``--save-descriptors``). With ``cfg.eval.no_labels`` no ground truth is
    read: every query is ranked and no metric computed. ``sharded``: every rank of a torchrun job calls
    it, each extracting its share (``evaluation.sharded``); rank 0 gets the evaluation, the others None.
    """
    gt, soft = labels(split, cfg)
    image_size = cost_image_size(split, cfg.data)
    model = None if model is None else model.to(device)
    database_model = None if database_model is None else database_model.to(device)
    with (
        scratch_folder(run_dir) as tmp,  # removed on any exit; a killed run's, by the next evaluation
        PhaseMemory(device) as memory,
    ):
        descriptors = describe(model, split, cfg, device, memory, Path(tmp), database_model, given, sharded)
        if descriptors is None:  # this rank's rows went to rank 0, which searches and scores
            return None
        if keep is not None:  # while the database's scratch file exists
            keep(as_array(descriptors.database), descriptors.queries)
        queries, query_index, scored_gt = evaluated_queries(
            descriptors.queries, gt, cfg.data.drop_queries_without_positives
        )
        memory.phase("search")
        predictions = search_split(descriptors.database, queries, query_index, split, cfg, device)
    cost = cost_section(
        model,
        image_size,
        device,
        cfg.eval.batch_size,
        descriptor_dim=int(descriptors.database.shape[1]),
        predictions=predictions,
        memory=memory,
        count_flops=count_flops,
        time_model=time_model,
        model_cost=model_cost,
        world_size=distributed.world_size() if sharded else 1,
    )
    protocol = protocol_section(split, cfg, gt, predictions)
    for key, described_by in (("batching", model), ("database_batching", database_model)):
        if (batched := batching(described_by, cfg.eval.batch_size)) is not None:
            protocol[key] = batched  # a descriptor that depends on its batch: how the images were batched
    if gt is None:  # no ground truth: the ranking, and no metric
        return Evaluation({}, [], cost, protocol, predictions, descriptors.queries)
    warn_queries_without_positives(gt, split, cfg.data.drop_queries_without_positives)
    scores = score_predictions(predictions, scored_gt, soft, split, cfg)
    metrics = scores.values
    curve = recall_curve(predictions.indices, scored_gt)
    protocol.update(protocol_fields(scores, soft))
    if run_dir is not None:  # the evaluation a record keeps, not each epoch's validation
        warn_recall_beyond_database(split, metrics, protocol["recall_at_beyond_database"])
    return Evaluation(
        metrics, curve, cost, protocol, predictions, descriptors.queries, scores.curves, scores.by_condition
    )


def labels(split: Split, cfg: RunConfig) -> tuple[GroundTruth | None, GroundTruth | None]:
    """The split's ground truth and its soft positives (None where it has none); neither with
    ``--no-labels``."""
    if cfg.eval.no_labels:
        return None, None
    radius = cfg.data.pos_radius
    return split.ground_truth(radius), soft_ground_truth(split, radius, cfg.eval.soft_radius)


def describe(
    model: nn.Module,
    split: Split,
    cfg: RunConfig,
    device: torch.device,
    memory: PhaseMemory,
    scratch: Path,
    database_model: nn.Module | None = None,
    given: dict[str, np.ndarray] | None = None,
    sharded: bool = False,
) -> Descriptors | None:
    """The split's descriptors: the database's by ``database_model`` (default ``model``), written to a
    file in ``scratch`` so a large one is never held twice (for the exact search on a GPU: kept there as
    a tensor, not uploaded again), the queries' by ``model``; those in ``given`` are taken as they are.
    Each model's extraction is its own ``memory`` phase. ``sharded``: extracted over the ranks of a
    torchrun job, None on every rank but 0."""
    given = given or {}
    extract_with = extract
    if sharded and distributed.world_size() > 1:  # alone: the plain extraction
        share_weights(model, database_model)
        extract_with = extract_for_main
    common = dict(
        device=device,
        batch_size=cfg.eval.batch_size,
        num_workers=cfg.eval.num_workers,
        quiet=cfg.quiet,
    )
    memory.phase("extract")
    database = given.get("database")
    if database is None:
        described_by = model if database_model is None else database_model
        database, _ = extract_with(
            described_by,
            split.database_paths,
            transform=data_transform(described_by, cfg.data),
            out_file=scratch / "database.npy",
            desc=f"{split.name} database",
            dtype=database_dtype(cfg.eval),
            keep_on_device=index_spec(cfg.eval).kind == "flat",  # searched there (not shards: arrays)
            **common,
        )
    if database_model is not None:
        memory.phase("extract")  # afresh: the database model's memory is not the query model's cost
    queries = given.get("queries")
    if queries is None:
        transform = data_transform(model, cfg.data)
        queries, _ = extract_with(model, split.query_paths, transform, desc=f"{split.name} queries", **common)
    if sharded and not distributed.is_main():
        return None
    descriptors = Descriptors(database, queries)
    check_descriptors(descriptors, split)
    return descriptors


def check_descriptors(descriptors: Descriptors, split: Split) -> None:
    """One row per image of the split, one size for database and queries."""
    for name, array, count in (
        ("database", descriptors.database, split.num_database),
        ("queries", descriptors.queries, split.num_queries),
    ):
        if len(array) != count:
            raise VPRBenchError(f"given {name} descriptors have {len(array)} rows, the split {count}")
    queries_dim, database_dim = descriptors.queries.shape[1], descriptors.database.shape[1]
    if queries_dim != database_dim:
        raise VPRBenchError(
            "asymmetric evaluation needs one descriptor size: "
            f"queries {queries_dim}-d, database {database_dim}-d"
        )


def evaluated_queries(
    queries: np.ndarray, gt: GroundTruth | None, drop_without_positives: bool
) -> tuple[np.ndarray, np.ndarray, GroundTruth | None]:
    """The query descriptors to score, their rows in the split and their ground truth: every query, or
    (``drop_without_positives``) those with a positive; every query where there is no ground truth."""
    if gt is not None and drop_without_positives and len(gt.queries_without_positives):
        kept = np.flatnonzero(gt.counts > 0)
        return queries[kept], kept, gt.subset(kept)
    return queries, np.arange(len(queries)), gt


def search_split(
    database: np.ndarray | torch.Tensor,
    queries: np.ndarray,
    query_index: np.ndarray,
    split: Split,
    cfg: RunConfig,
    device: torch.device,
) -> Predictions:
    """The ``max(recall_at)`` nearest database images of each query in the index ``cfg.eval`` asks for;
    where the split groups its database (panoramas), each group counts once."""
    k = max(cfg.eval.recall_at)
    spec = index_spec(cfg.eval)
    groups = split.database_groups
    if groups is None:
        distances, indices, ms_per_query = search(database, queries, k, spec, device)
    else:  # search deeper, then let each group (panorama) count once
        per_group = int(np.bincount(groups).max())
        distances, indices, ms_per_query = search(database, queries, k * per_group, spec, device)
        places = len(np.unique(groups))  # never more ranks than places: no -1 padding
        distances, indices = collapse_groups(distances, indices, groups, min(k, places))
    return Predictions(query_index, indices, distances, ms_per_query)


def score_predictions(
    predictions: Predictions, gt: GroundTruth, soft: GroundTruth | None, split: Split, cfg: RunConfig
) -> Scores:
    """The metrics ``--metrics`` selects of the ranking (``gt``: the evaluated queries', ``soft``: the
    split's soft positives or None), over all queries and per condition of the split."""
    index = predictions.query_index
    inputs = metric_inputs(
        predictions.indices, predictions.distances, gt, soft, index, split, cfg.eval.recall_at
    )
    return score(inputs, cfg.eval.metrics, conditions_of(split, index))


def recall_curve(predictions: np.ndarray, gt: GroundTruth) -> list[float]:
    """Recall@N for every N from 1 to the number of predictions per query (for Recall@N plots)."""
    from vpr_bench.evaluation.metrics import hits

    if predictions.shape[1] == 0 or len(predictions) == 0:
        return []
    first_hit = hits(predictions, gt).cumsum(axis=1) > 0
    return [round(float(v), 4) for v in 100.0 * first_hit.mean(axis=0)]


def warn_queries_without_positives(gt: GroundTruth, split: Split, dropped: bool) -> None:
    without = len(gt.queries_without_positives)
    if without:
        log.warning(
            "%d of %d queries have no positive within %s; they are %s",
            without,
            split.num_queries,
            f"{gt.radius:g} m" if gt.radius else "the ground-truth lists",
            "dropped" if dropped else "kept and count as misses",
        )


def warn_recall_beyond_database(split: Split, metrics: dict[str, float], beyond: list[int]) -> None:
    for n in beyond:
        log.warning(
            "--recall-at %d: the database holds only %d %s, so R@%d = %.2f just counts the queries that "
            "have any positive (the record notes it: protocol.recall_at_beyond_database)",
            n,
            ranked_items(split),
            "images" if split.database_groups is None else "places",
            n,
            metrics[f"R@{n}"],
        )


def cost_image_size(split: Split, data: DataConfig) -> tuple[int, int]:
    """The one input size cost figures are measured at: at native resolution, the first database
    image's."""
    if tuple(data.image_size) == NATIVE:
        return first_image_size(split.database_paths[0])
    return tuple(data.image_size)
