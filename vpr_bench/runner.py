"""Wiring: dataset → model → evaluation → record. The CLI calls these; they hold no logic of their own."""

from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch

from vpr_bench import distributed
from vpr_bench.checkpoints import MethodCheckpoint, load_weights, read_method_checkpoint
from vpr_bench.config import RunConfig
from vpr_bench.datasets import Split, load_split
from vpr_bench.errors import VPRBenchError
from vpr_bench.evaluation.engine import evaluate, resolve_device
from vpr_bench.methods import build_method
from vpr_bench.registry import METHODS, PIPELINES
from vpr_bench.results.store import new_run_dir, write_record
from vpr_bench.training import fitting

log = logging.getLogger("vpr_bench")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def attach_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    return handler


def fit_from_data(
    model, cfg: RunConfig, device, train: Split | None = None, phases: tuple = ("initialise",)
) -> bool:
    """Fit what a ``FittedFromData`` model takes from data (``vpr_bench.training.fitting``) on the
    training database; whether anything was fitted. ``initialise`` runs before training (NetVLAD:
    k-means centroids), ``finalise`` after it on the best weights (NetVLAD: PCA-whitening); an
    ``--untrained`` model gets both when the dataset has a training split. ``train``: the training split
    if the caller has it loaded."""
    if not fitting.fits_from_data(model):
        return False
    if phases == ("finalise",) and not model.whitening_dim:
        return False
    try:
        train = train or load_split(cfg.data, "train")[1]
    except VPRBenchError as exc:
        log.warning(
            "%s: no training split to fit %s from (%s); keeping its random initialisation",
            cfg.model.method,
            "/".join(phases),
            exc,
        )
        return False
    fitting.check_whitening(model, train.num_database)  # before any work: e.g. --pca-dim too large
    for phase in phases:
        getattr(fitting, phase)(model, train.database_paths, cfg, device)
    return True


def device_name(device: torch.device) -> str:
    """The card's name on a GPU; the CPU's model name (and core count) on a CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import os
    import platform

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            name = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name} ({os.cpu_count()} cores)"


def training_budget(cfg: RunConfig, progress, device: torch.device, model=None) -> dict:
    """What a trained run was given: the fields ``compare`` checks before it puts two runs side by side.
    ``pretrained``: whether the backbone started from pretrained weights — what was loaded, not what was
    asked for (``--pretrained`` with the hub unreachable starts from random weights)."""
    tuples = sum(int(h.get("tuples", 0)) for h in progress.history)
    facts = getattr(model, "backbone_facts", {}) or {}
    loaded = [str(v) for k, v in facts.items() if k.endswith("weights")]
    pretrained = any(not w.startswith("random") for w in loaded) if loaded else bool(cfg.model.pretrained)
    return {
        "epochs": progress.epoch,
        "max_epochs": cfg.train.epochs,
        "queries_per_epoch": cfg.train.queries_per_epoch or "all",
        "tuples_seen": tuples,
        "images_seen": tuples * (2 + cfg.train.negatives),  # query + positive + negatives per tuple
        "batch_size": cfg.train.batch_size,
        "lr": cfg.train.lr,
        "image_size": "native" if tuple(cfg.data.image_size) == (0, 0) else list(cfg.data.image_size),
        "wall_s": round(sum(float(h.get("seconds", 0)) for h in progress.history), 1),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "seed": cfg.seed,
        "preset": cfg.preset,
        "pretrained": pretrained,
    }


def record_header(cfg: RunConfig, dataset: str, command: str, weights: str, trained: bool) -> dict:
    """The fields every run record starts with (``plugin``: where the method comes from)."""
    registry = PIPELINES if cfg.model.method in PIPELINES else METHODS
    return {
        "method": cfg.model.method,
        "plugin": registry.get(cfg.model.method).source,
        "dataset": dataset,
        "command": command,
        "backbone": cfg.model.backbone,
        "preset": cfg.preset,
        "seed": cfg.seed,
        "weights": weights,
        "trained": trained,
    }


def load_model(cfg: RunConfig, checkpoint: str | MethodCheckpoint):
    """``cfg.model`` built and filled from ``checkpoint`` (every weight from the file: no pretrained
    download); the path every ``--checkpoint`` takes. ``cfg`` should already hold what the file decides
    (``resolve(..., from_file=checkpoint.settings)``)."""
    import dataclasses

    if not isinstance(checkpoint, MethodCheckpoint):
        checkpoint = read_method_checkpoint(cfg.model.method, checkpoint)
    model = build_method(dataclasses.replace(cfg.model, pretrained=False))
    load_weights(model, checkpoint, cfg.model.method)
    return model


def evaluate_run(
    cfg: RunConfig, checkpoint: str | MethodCheckpoint | None = None, command: str = "eval"
) -> Path:
    """Evaluate a method (untrained, or with ``checkpoint``: a path, or a file already read for the
    method) and write its record; the run folder."""
    seed_everything(cfg.seed)
    device = resolve_device(cfg.eval.device)
    if checkpoint is not None and not isinstance(checkpoint, MethodCheckpoint):
        checkpoint = read_method_checkpoint(cfg.model.method, checkpoint)  # fails before the data is read
    dataset_name, split = load_split(cfg.data, cfg.eval.split)
    if checkpoint:
        model = load_model(cfg, checkpoint)
        weights = checkpoint.description
    else:
        model = build_method(cfg.model)
        fit_from_data(model, cfg, device, phases=("initialise", "finalise"))
        weights = getattr(model, "backbone_facts", {}).get("weights", "unknown")
    return evaluate_and_record(
        cfg, model, split, dataset_name, device, weights, trained=bool(checkpoint), command=command
    )


def evaluate_and_record(
    cfg: RunConfig,
    model,
    split: Split,
    dataset_name: str,
    device,
    weights: str,
    trained: bool,
    command: str = "eval",
    database_model=None,
    extra: dict | None = None,
    method: str | None = None,
) -> Path:
    """The one evaluation path of every method, symmetric or asymmetric (``database_model``: the
    database described by another model): a new run folder with run.log, config.json (with argv) and the
    record; the run folder."""
    method = method or cfg.model.method
    run_dir = new_run_dir(cfg.out, dataset_name, method)
    handler = attach_log(run_dir)
    try:
        log.info(
            "%s: %s on %s/%s (%d database, %d queries), run %s",
            command,
            method,
            dataset_name,
            split.name,
            split.num_database,
            split.num_queries,
            run_dir,
        )
        result = evaluate(model, split, cfg, device, run_dir, database_model=database_model)
        record = {**record_header(cfg, dataset_name, command, weights, trained), **result, **(extra or {})}
        if method != cfg.model.method:
            record["method"] = method
        write_record(run_dir, {"argv": sys.argv, **cfg.to_dict()}, record)
        log.info("%s", "  ".join(f"{k} {v:.2f}" for k, v in result["metrics"].items()))
    finally:
        log.removeHandler(handler)
        handler.close()
    return run_dir


def train_run(
    cfg: RunConfig | None = None, resume: str | Path | None = None, extra: dict | None = None
) -> Path:
    """Train a method (mining + triplets, early stopping on val R@1), then test its best weights.

    With ``resume`` (a run folder) the run's own config.json is used and training continues from its
    last checkpoint in the same folder. A method registered with ``trainer=`` is trained by that
    ``Trainer`` subclass (distillation). ``extra``: fields added to the record.
    """
    import json
    import time

    from vpr_bench._io import atomic_write_json
    from vpr_bench.training import checkpoint as ckpt
    from vpr_bench.training.trainer import Trainer

    if resume is not None:
        run_dir = Path(resume)
        try:
            saved = json.loads((run_dir / "config.json").read_text())
            cfg, extra = RunConfig.from_dict(saved), saved.get("record_extra")
        except (OSError, ValueError, TypeError) as exc:
            raise VPRBenchError(f"--resume {run_dir}: cannot read its config.json ({exc})") from None
        if (run_dir / "metrics.json").exists():
            raise VPRBenchError(f"--resume {run_dir}: this run is finished (metrics.json exists)")
        state = ckpt.load_state(run_dir / ckpt.LAST)
    distributed.init(cfg.eval.device)  # under torchrun: join the other ranks
    main = distributed.is_main()
    if not main:
        cfg.quiet = True  # one set of progress bars and logs: rank 0's
    seed_everything(cfg.seed)
    device = resolve_device(cfg.eval.device)
    dataset_name, train = load_split(cfg.data, "train")
    _, val = load_split(cfg.data, "val")
    _, test = load_split(cfg.data, cfg.eval.split)
    model = build_method(cfg.model)
    if resume is None:
        if main:
            run_dir = new_run_dir(cfg.out, dataset_name, cfg.model.method)
            saved = {"argv": sys.argv, **cfg.to_dict(), **({"record_extra": extra} if extra else {})}
            atomic_write_json(run_dir / "config.json", saved)
        run_dir = Path(distributed.broadcast(str(run_dir) if main else None))
    handler = attach_log(run_dir) if main else logging.NullHandler()
    try:
        trainer_class = METHODS.get(cfg.model.method).attributes.get("trainer") or Trainer
        trainer = trainer_class(model, cfg, train, val, device, run_dir)
        if resume is None:
            log.info(
                "train: %s on %s (%d database, %d queries), run %s",
                cfg.model.method,
                dataset_name,
                train.num_database,
                train.num_queries,
                run_dir,
            )
            fit_from_data(model, cfg, device, train)
            trainer.save()
        else:
            trainer.load_state_dict(state)
            log.info(
                "resume: %s from epoch %d, batch %d",
                run_dir,
                trainer.progress.epoch + 1,
                trainer.progress.position,
            )
        started = time.perf_counter()
        progress = trainer.fit()
        if not main:  # rank 0 tests the best weights and writes the record
            return run_dir
        ckpt.load_best(model, run_dir)
        if fit_from_data(model, cfg, device, train, phases=("finalise",)):  # e.g. NetVLAD's whitening
            ckpt.save_weights(run_dir / ckpt.BEST, model)
        kept: dict = {}
        result = evaluate(model, test, cfg, device, run_dir, keep=kept)
        facts = getattr(model, "backbone_facts", {})
        report = trainer.report(test, query_descriptors=kept.get("queries"))  # reuses them (asymmetric)
        record = {
            **record_header(
                cfg, dataset_name, "run", f"trained from {facts.get('weights', 'unknown')}", True
            ),
            **result,
            **report,
            **(extra or {}),
            "training": {
                "epochs": progress.epoch,
                "best_epoch": progress.best_epoch,
                "best_val_R@1": progress.best_recall,
                "stopped_early": progress.stopped_early,
                "steps": progress.global_step,
                "seconds_this_session": time.perf_counter() - started,
                # wall seconds per phase of this session: cache refresh, mining, optimisation, …
                "time_split_s": {k: round(v, 2) for k, v in trainer.time_split.items()},
                "history": progress.history,
            },
            "budget": training_budget(cfg, progress, device, model),
        }
        write_record(run_dir, {"argv": sys.argv, **cfg.to_dict()}, record)
        log.info("test: %s", "  ".join(f"{k} {v:.2f}" for k, v in result["metrics"].items()))
    finally:
        log.removeHandler(handler)
        handler.close()
    return run_dir
