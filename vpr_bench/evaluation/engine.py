"""One evaluation, start to end: split → descriptors → faiss → metrics + cost figures."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vpr_bench.config import RunConfig
from vpr_bench.datasets.images import NATIVE, data_transform, first_image_size
from vpr_bench.datasets.split import Split
from vpr_bench.errors import VPRBenchError
from vpr_bench.evaluation.descriptors import extract, time_forward
from vpr_bench.evaluation.matching import IndexSpec, collapse_groups, search
from vpr_bench.evaluation.memory import PhaseMemory
from vpr_bench.registry import METRICS

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from vpr_bench.errors import ConfigError

        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return torch.device(name)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops_per_image(model: nn.Module, image_size: tuple[int, int], device: torch.device) -> float | None:
    """Forward GFLOPs for one image, counted by ``torch.utils.flop_counter.FlopCounterMode``.

    It counts matrix products and convolutions (2 FLOPs per multiply-add), the bulk of a VPR network;
    element-wise operations are not counted. None when the model cannot be traced that way.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, *image_size, device=device))
        return counter.get_total_flops() / 1e9
    except Exception:  # an op the counter cannot handle must not cost the evaluation
        return None
    finally:
        model.train(was_training)


def recall_curve(predictions: np.ndarray, gt) -> list[float]:
    """Recall@N for every N from 1 to the number of predictions per query (for Recall@N plots)."""
    from vpr_bench.evaluation.metrics import hits

    if predictions.shape[1] == 0 or len(predictions) == 0:
        return []
    first_hit = hits(predictions, gt).cumsum(axis=1) > 0
    return [round(float(v), 4) for v in 100.0 * first_hit.mean(axis=0)]


def evaluate(
    model: nn.Module,
    split: Split,
    cfg: RunConfig,
    device: torch.device,
    run_dir: Path | None = None,
    database_model: nn.Module | None = None,
    count_flops: bool = True,
    time_model: bool = True,
    given: dict | None = None,
    keep: dict | None = None,
) -> dict:
    """Metrics and cost figures of ``model`` on ``split``; top-k predictions saved in ``run_dir``.

    ``database_model``: asymmetric retrieval — the database described by this model (e.g. a teacher on
    a server), the queries by ``model`` (e.g. a student on the robot); both must share one metric space.
    Cost figures are the query model's. ``count_flops`` False skips the FLOP count (an extra traced
    forward pass) and ``time_model`` False the timing pass (``time_forward``: a few forwards of a fixed
    synthetic batch) where only the metrics are wanted, e.g. each epoch's validation; ms/image is then None.
    Peak memory is measured per phase (``PhaseMemory``): descriptor extraction and search.
    ``given``: descriptors already computed by these very models for this split ("database", "queries"),
    used instead of extracting them again (a student's queries from its own evaluation, a frozen
    teacher's stored database); ``keep``: a dict that receives this evaluation's query descriptors.
    """
    given = given or {}
    gt = split.ground_truth(cfg.data.pos_radius)
    native = tuple(cfg.data.image_size) == NATIVE
    # cost figures need one input size: at native resolution, the first database image's
    cost_size = first_image_size(split.database_paths[0]) if native else tuple(cfg.data.image_size)
    transform = data_transform(model, cfg.data)
    model = model.to(device)
    db_model = model if database_model is None else database_model.to(device)
    db_transform = transform if database_model is None else data_transform(db_model, cfg.data)
    common = dict(
        transform=transform,
        device=device,
        batch_size=cfg.eval.batch_size,
        num_workers=cfg.eval.num_workers,
        quiet=cfg.quiet,
    )
    with (
        tempfile.TemporaryDirectory(dir=run_dir, prefix=".descriptors-") as tmp,
        PhaseMemory(device) as memory,
    ):
        memory.phase("extract")
        database = given.get("database")
        if database is None:
            database, _ = extract(
                db_model,
                split.database_paths,
                out_file=Path(tmp) / "database.npy",
                desc=f"{split.name} database",
                dtype=np.dtype(cfg.eval.descriptor_dtype),
                **{**common, "transform": db_transform},
            )
        if database_model is not None:
            memory.phase("extract")  # afresh: the database model's memory is not the query model's cost
        queries = given.get("queries")
        if queries is None:
            queries, _ = extract(model, split.query_paths, desc=f"{split.name} queries", **common)
        for name, array, count in (
            ("database", database, split.num_database),
            ("queries", queries, split.num_queries),
        ):
            if len(array) != count:
                raise VPRBenchError(f"given {name} descriptors have {len(array)} rows, the split {count}")
        if keep is not None:
            keep["queries"] = np.array(queries)
        if queries.shape[1] != database.shape[1]:
            raise VPRBenchError(
                f"asymmetric evaluation needs one descriptor size: queries {queries.shape[1]}-d, "
                f"database {database.shape[1]}-d"
            )
        without = gt.queries_without_positives
        if cfg.data.drop_queries_without_positives and len(without):
            kept = np.flatnonzero(gt.counts > 0)
            queries, gt = queries[kept], gt.subset(kept)
        else:
            kept = np.arange(len(queries))
        memory.phase("search")
        k = max(cfg.eval.recall_at)
        spec = IndexSpec(
            cfg.eval.index,
            cfg.eval.nlist,
            cfg.eval.m,
            cfg.eval.nprobe,
            fp16=cfg.eval.descriptor_dtype == "float16",
        )
        groups = split.database_groups
        if groups is None:
            distances, predictions, ms_per_query = search(database, queries, k, spec, device)
        else:  # search deeper, then let each group (panorama) count once
            per_group = int(np.bincount(groups).max())
            distances, predictions, ms_per_query = search(database, queries, k * per_group, spec, device)
            places = len(np.unique(groups))  # never more ranks than places: no -1 padding
            distances, predictions = collapse_groups(distances, predictions, groups, min(k, places))
    if len(without):
        log.warning(
            "%d of %d queries have no positive within %s; they are %s",
            len(without),
            split.num_queries,
            f"{gt.radius:g} m" if gt.radius else "the ground-truth lists",
            "dropped" if cfg.data.drop_queries_without_positives else "kept and count as misses",
        )
    metrics: dict = {}
    for entry in METRICS.entries():
        metrics.update(entry.builder(predictions, gt, cfg.eval.recall_at))
    curve = recall_curve(predictions, gt)
    ms_per_image, timing = (
        time_forward(model, cost_size, device, cfg.eval.batch_size) if time_model else (None, None)
    )
    if run_dir is not None:
        np.savez_compressed(
            run_dir / "predictions.npz",
            query_index=kept.astype(np.int32),
            predictions=predictions.astype(np.int32),
            distances=distances.astype(np.float16),
        )
    return {
        "metrics": metrics,
        "recall_curve": curve,
        "cost": {
            "descriptor_dim": int(database.shape[1]),
            "params": count_parameters(model),
            "gflops_per_image": gflops_per_image(model, cost_size, device) if count_flops else None,
            "cost_image_size": list(cost_size),
            "ms_per_image": ms_per_image,
            "ms_per_query": ms_per_query,
            "device": str(device),
            "batch_size": cfg.eval.batch_size,
            "timing": timing,
            # the highest phase's (records before "memory" existed: the process's lifetime peak)
            "peak_rss_mb": memory.peak("rss"),
            **({"peak_gpu_mb": memory.peak("gpu")} if device.type == "cuda" else {}),
            "memory": memory.describe(),
        },
        "protocol": {
            "name": split.protocol_name,  # msls-val, nordland-pnv, pitts30k-test-25m, ...
            "split": split.name,
            "num_database": split.num_database,
            "num_queries": split.num_queries,
            "num_queries_evaluated": int(len(kept)),
            "queries_without_positives": int(len(without)),
            "queries_without_positives_dropped": bool(cfg.data.drop_queries_without_positives),
            "ground_truth": gt.kind,
            "pos_radius_m": gt.radius,
            "positions": None if gt.kind == "list" else split.positions,  # metres (UTM) or frame index
            "queries_left_out_by_protocol": split.queries_left_out,  # by the reader (MSLS: no positive)
            "image_size": "native" if native else list(cfg.data.image_size),
            "interpolation": None if native else cfg.data.interpolation,
            "preprocess": cfg.data.preprocess,
            "index": spec.describe(),
            # fewer database images (places) than max(recall_at): all ranked, R@N beyond is "any positive"
            "predictions_per_query": int(predictions.shape[1]),
            "k_capped_at_database": bool(predictions.shape[1] < k),
            "database_groups": None if split.database_groups is None else "one hit per group (panorama)",
            "source": split.source,
            **{k: v for k, v in split.info.items() if k in ("layout",)},
        },
    }
