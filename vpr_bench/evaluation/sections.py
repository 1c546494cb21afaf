"""The record sections an evaluation fills beside its metrics: what it cost and how it was scored."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vpr_bench.config import RunConfig
from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.datasets.images import NATIVE
from vpr_bench.datasets.split import Split
from vpr_bench.devices import device_name
from vpr_bench.evaluation.descriptors import time_forward
from vpr_bench.evaluation.matching import Predictions, index_spec
from vpr_bench.evaluation.memory import PhaseMemory


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops_per_image(model: nn.Module, image_size: tuple[int, int], device: torch.device) -> float | None:
    """Forward GFLOPs for one image, counted by ``torch.utils.flop_counter.FlopCounterMode``.

    It counts matrix products and convolutions (2 FLOPs per multiply-add), the bulk of a VPR network;
    element-wise operations are not counted. None when the model cannot be traced that way.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    # the counter's module tracker hooks the gradient of any module input that requires one, and fails
    # under no_grad on a parameter passed as an input (BoQ's learned queries): count with none requiring it
    requires = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        for parameter, _ in requires:
            parameter.requires_grad_(False)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, *image_size, device=device))
        return counter.get_total_flops() / 1e9
    except Exception:  # an op the counter cannot handle must not cost the evaluation
        return None
    finally:
        for parameter, flag in requires:
            parameter.requires_grad_(flag)
        model.train(was_training)


def cost_section(
    model: nn.Module | None,
    image_size: tuple[int, int],
    device: torch.device,
    batch_size: int,
    *,
    descriptor_dim: int,
    predictions: Predictions,
    memory: PhaseMemory,
    count_flops: bool = True,
    time_model: bool = True,
    model_cost: dict | None = None,
    world_size: int = 1,
) -> dict:
    """The record's ``cost``: the query model's size, FLOPs and ms/image at ``image_size`` (each skipped
    when not asked for: None), the search's ms/query and the evaluation's peak memory per phase. Without
    a model (descriptors a run kept), the model's figures are ``model_cost``'s, that run's, or None.
    ``world_size``: how many processes extracted the descriptors (torchrun); the timing pass, the search
    and the memory figures are rank 0's alone."""
    if model is None:
        measured = {"params": None, "gflops_per_image": None, "ms_per_image": None, "timing": None}
        measured.update(model_cost or {})
    else:
        ms, timing = time_forward(model, image_size, device, batch_size) if time_model else (None, None)
        measured = {
            "params": count_parameters(model),
            "gflops_per_image": gflops_per_image(model, image_size, device) if count_flops else None,
            "ms_per_image": ms,
            "timing": timing,
        }
    return {
        "descriptor_dim": descriptor_dim,
        "params": measured["params"],
        "gflops_per_image": measured["gflops_per_image"],
        "cost_image_size": measured.get("cost_image_size", list(image_size)),
        "ms_per_image": measured["ms_per_image"],
        "ms_per_query": predictions.ms_per_query,
        "device": device_name(device),  # the card's or CPU's name (records before it: "cpu"/"cuda")
        "batch_size": measured.get("batch_size", batch_size),
        "world_size": world_size,  # processes that extracted (records before it: 1)
        "timing": measured["timing"],
        # the highest phase's (records before "memory" existed: the process's lifetime peak)
        "peak_rss_mb": memory.peak("rss"),
        **({"peak_gpu_mb": memory.peak("gpu")} if device.type == "cuda" else {}),
        "memory": memory.describe(),
    }


def ranked_items(split: Split) -> int:
    """How many results a query can get: the database images, or its places where it groups them."""
    groups = split.database_groups
    return split.num_database if groups is None else len(np.unique(groups))


def recall_beyond_database(split: Split, recall_at: tuple[int, ...]) -> list[int]:
    """The N of ``recall_at`` that reach the whole ranking: R@N then only tells whether a query has any
    positive at all."""
    return [n for n in recall_at if n >= ranked_items(split)]


def protocol_section(split: Split, cfg: RunConfig, gt: GroundTruth | None, predictions: Predictions) -> dict:
    """The record's ``protocol``: what was scored and how (``gt``: the split's whole ground truth; None:
    ``--no-labels``, nothing scored)."""
    native = tuple(cfg.data.image_size) == NATIVE
    deepest = max(cfg.eval.recall_at)
    labels = {
        "queries_without_positives": None if gt is None else int(len(gt.queries_without_positives)),
        "ground_truth": "none (--no-labels: ranked, not scored)" if gt is None else gt.kind,
        "pos_radius_m": None if gt is None else gt.radius,
        # metres (UTM) or frame index
        "positions": None if gt is None or gt.kind == "list" else split.positions,
    }
    return {
        "name": split.protocol_name,  # msls-val, nordland-pnv, pitts30k-test-25m, ...
        "split": split.name,
        "num_database": split.num_database,
        "num_queries": split.num_queries,
        "num_queries_evaluated": int(len(predictions.query_index)),
        "queries_without_positives": labels["queries_without_positives"],
        "queries_without_positives_dropped": bool(cfg.data.drop_queries_without_positives),
        "ground_truth": labels["ground_truth"],
        "pos_radius_m": labels["pos_radius_m"],
        "positions": labels["positions"],
        "queries_left_out_by_protocol": split.queries_left_out,  # by the reader (MSLS: no positive)
        "image_size": "native" if native else list(cfg.data.image_size),
        "interpolation": None if native else cfg.data.interpolation,
        "preprocess": cfg.data.preprocess,
        "index": index_spec(cfg.eval).describe(),
        # fewer database images (places) than max(recall_at): all ranked, R@N beyond is "any positive"
        "predictions_per_query": int(predictions.indices.shape[1]),
        "k_capped_at_database": bool(predictions.indices.shape[1] < deepest),
        # N ≥ the database (its places): R@N = the share of queries with any positive, 100 % if all have one
        "recall_at_beyond_database": recall_beyond_database(split, cfg.eval.recall_at),
        "database_groups": None if split.database_groups is None else "one hit per group (panorama)",
        "source": split.source,
        **{k: v for k, v in split.info.items() if k in ("layout",)},
    }
