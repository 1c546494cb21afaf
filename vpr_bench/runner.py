"""Wiring: dataset → model → evaluation → record. The CLI calls these; they hold no logic of their own."""

from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch

from vpr_bench.checkpoints import load_weights
from vpr_bench.config import RunConfig
from vpr_bench.datasets import DatasetOptions, Split, build_dataset
from vpr_bench.evaluation.engine import evaluate, resolve_device
from vpr_bench.methods import build_method
from vpr_bench.results.store import new_run_dir, write_record

log = logging.getLogger("vpr_bench")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_split(cfg: RunConfig, split: str) -> tuple[str, Split]:
    options = DatasetOptions(
        cfg.data.data_root,
        cfg.data.struct_dir,
        cfg.data.layout,
        cfg.data.pos_radius,
        cfg.data.train_pos_radius,
    )
    dataset = build_dataset(cfg.data.dataset, options)
    loaded = dataset.split(split, options)
    loaded.validate()
    return dataset.name, loaded


def attach_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    return handler


def evaluate_run(cfg: RunConfig, checkpoint: str | None = None, command: str = "eval") -> Path:
    """Evaluate a method (untrained, or with ``checkpoint``) and write its record; the run folder."""
    seed_everything(cfg.seed)
    device = resolve_device(cfg.eval.device)
    dataset_name, split = load_split(cfg, cfg.eval.split)
    model = build_method(cfg.model)
    if checkpoint:
        load_weights(model, checkpoint)
    run_dir = new_run_dir(cfg.out, dataset_name, cfg.model.method)
    handler = attach_log(run_dir)
    try:
        log.info(
            "%s: %s on %s/%s (%d database, %d queries), run %s",
            command,
            cfg.model.method,
            dataset_name,
            split.name,
            split.num_database,
            split.num_queries,
            run_dir,
        )
        result = evaluate(model, split, cfg, device, run_dir)
        facts = getattr(model, "backbone_facts", {})
        record = {
            "method": cfg.model.method,
            "dataset": dataset_name,
            "command": command,
            "backbone": cfg.model.backbone,
            "preset": cfg.preset,
            "seed": cfg.seed,
            "weights": f"checkpoint:{checkpoint}" if checkpoint else facts.get("weights", "unknown"),
            "trained": bool(checkpoint),
            **result,
        }
        write_record(run_dir, {"argv": sys.argv, **cfg.to_dict()}, record)
        m = result["metrics"]
        log.info("%s", "  ".join(f"{k} {v:.2f}" for k, v in m.items()))
    finally:
        log.removeHandler(handler)
        handler.close()
    return run_dir
