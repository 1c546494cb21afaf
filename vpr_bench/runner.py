"""Wiring: dataset → model → evaluation → record. The CLI calls these; they hold no logic of their own."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vpr_bench import distributed
from vpr_bench._io import atomic_write_json
from vpr_bench.checkpoints import MethodCheckpoint, read_method_checkpoint
from vpr_bench.config import RunConfig
from vpr_bench.datasets import Split, load_split
from vpr_bench.devices import resolve_device
from vpr_bench.errors import VPRBenchError
from vpr_bench.evaluation.engine import evaluate
from vpr_bench.evaluation.scoring import soft_ground_truth
from vpr_bench.methods import build_method, check_model_config, check_trainable
from vpr_bench.models_io import load_model
from vpr_bench.registry import METHODS, PIPELINES
from vpr_bench.results.descriptors import StoredDescriptors, descriptor_saver, kept_fields, read_descriptors
from vpr_bench.results.predictions import write_predictions, write_ranking
from vpr_bench.results.store import new_run_dir, write_record
from vpr_bench.settings import variant_of
from vpr_bench.training import fitting
from vpr_bench.training import state as ckpt
from vpr_bench.training.places import load_training_set, trainer_class
from vpr_bench.training.record import training_budget, training_section

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


def log_failure(handler: logging.Handler, exc: BaseException) -> None:
    """Why a run stopped, in its run.log only (the CLI tells the screen): the one-line error of a user
    mistake, "interrupted", or a bug's traceback — so that a folder left behind says what happened."""
    if isinstance(exc, VPRBenchError):
        message, exc_info = f"failed: {exc}", None
    elif isinstance(exc, KeyboardInterrupt):
        message, exc_info = "interrupted", None
    else:
        message, exc_info = f"failed: {type(exc).__name__}: {exc}", (type(exc), exc, exc.__traceback__)
    handler.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, message, (), exc_info))


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
    fitting.check_whitening(model, train.num_database)  # before any work: e.g. pca_dim too large
    for phase in phases:
        getattr(fitting, phase)(model, train.database_paths, cfg, device)
    return True


def record_header(cfg: RunConfig, dataset: str, command: str, weights: str, trained: bool) -> dict:
    """The fields every run record starts with (``plugin``: where the method comes from; ``variant``: the
    method options that make it differ from the paper's model, "" for none)."""
    registry = PIPELINES if cfg.model.method in PIPELINES else METHODS
    return {
        "method": cfg.model.method,
        "variant": variant_of(check_model_config(cfg.model, registry)),
        "plugin": registry.get(cfg.model.method).source,
        "dataset": dataset,
        "command": command,
        "backbone": cfg.model.backbone,
        "preset": cfg.preset,
        "seed": cfg.seed,
        "weights": weights,
        "trained": trained,
    }


def evaluate_run(
    cfg: RunConfig, checkpoint: str | MethodCheckpoint | None = None, command: str = "eval"
) -> Path:
    """Evaluate a method (untrained, or with ``checkpoint``: a path, or a file already read for the
    method; or the descriptors a run kept, ``--descriptors``) and write its record; the run folder."""
    seed_everything(cfg.seed)
    device = resolve_device(cfg.eval.device)
    if cfg.eval.descriptors:
        return _evaluate_kept(cfg, device, command)
    if checkpoint is not None and not isinstance(checkpoint, MethodCheckpoint):
        checkpoint = read_method_checkpoint(cfg.model.method, checkpoint)  # fails before the data is read
    dataset_name, split = load_split(cfg.data, cfg.eval.split)
    if not cfg.eval.no_labels:  # no ground truth, or a wrong --soft-radius: fail before the model is built
        split.require_labels()
        soft_ground_truth(split, cfg.data.pos_radius, cfg.eval.soft_radius)
    if checkpoint:
        model, loaded = load_model(cfg, checkpoint, file_decides=False)  # cfg holds what the file decides
        weights = loaded.description
    else:
        model = build_method(cfg.model)
        fit_from_data(model, cfg, device, phases=("initialise", "finalise"))
        weights = getattr(model, "backbone_facts", {}).get("weights", "unknown")
    return evaluate_and_record(
        cfg, model, split, dataset_name, device, weights, trained=bool(checkpoint), command=command
    )


def _evaluate_kept(cfg: RunConfig, device, command: str) -> Path:
    """``--descriptors RUN``: the descriptors RUN kept, evaluated on the split they describe without
    running a model; the record names the model that made them (method, weights, preprocessing)."""
    dataset_name, split = load_split(cfg.data, cfg.eval.split)
    kept = read_descriptors(cfg.eval.descriptors, split)
    header = kept.header
    weights, trained = header.get("weights") or "unknown", bool(header.get("trained"))
    extra = {**header, **kept.record_fields()}
    return evaluate_and_record(
        kept.configure(cfg),
        None,  # no model runs
        split,
        dataset_name,
        device,
        weights,
        trained,
        command=command,
        extra=extra,
        method=header.get("method"),
        kept=kept,
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
    kept: StoredDescriptors | None = None,
) -> Path | None:
    """The one evaluation path of every method, symmetric or asymmetric (``database_model``: the
    database described by another model): a new run folder with run.log, config.json (with argv) and the
    record; the run folder. ``kept``: descriptors a run kept, evaluated instead of running ``model``
    (None). Under torchrun every rank calls it; rank 0 records, the others extract their share (None)."""
    if not distributed.is_main():
        if kept is None:  # kept descriptors: rank 0 alone evaluates them, no model runs
            evaluate(model, split, cfg, device, database_model=database_model, sharded=True)
        return None
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
        header = record_header(cfg, dataset_name, command, weights, trained)
        keep = descriptor_saver(run_dir, split, cfg, {**header, **(extra or {}), "method": method})
        reuse = {"given": kept.arrays(), "model_cost": kept.model_cost} if kept else {"sharded": True}
        evaluation = evaluate(
            model, split, cfg, device, run_dir=run_dir, database_model=database_model, keep=keep, **reuse
        )
        write_ranking(run_dir, split, evaluation.predictions, cfg.eval.no_labels)
        record = {**header, **evaluation.sections(), **kept_fields(cfg), **(extra or {})}
        if method != cfg.model.method:
            record["method"] = method
        write_record(run_dir, {"argv": sys.argv, **cfg.to_dict()}, record)
        scored = "  ".join(f"{k} {v:.2f}" for k, v in evaluation.metrics.items())
        log.info("%s", scored or f"{split.num_queries} queries ranked, no ground truth: no metrics")
    except BaseException as exc:
        log_failure(handler, exc)
        raise
    finally:
        log.removeHandler(handler)
        handler.close()
    return run_dir


def train_run(
    cfg: RunConfig | None = None,
    resume: str | Path | None = None,
    extra: dict | None = None,
    quiet: bool | None = None,
) -> Path:
    """Train a method (mining + triplets, early stopping on val R@1), then test its best weights.

    With ``resume`` (a run folder) the run's own config.json is used and training continues from its
    last checkpoint in the same folder; ``quiet`` (not None) then replaces the run's own (it only changes
    the screen). A method registered with ``trainer=`` is trained by that ``Trainer`` subclass
    (distillation). ``extra``: fields added to the record.
    """
    if resume is not None:
        return _resume(Path(resume), quiet)
    if cfg is None:
        raise TypeError("train_run needs a configuration or a run folder to resume")
    return _start_fresh(cfg, extra)


@dataclass
class _Training:
    """What one training session works on."""

    cfg: RunConfig
    device: torch.device
    dataset_name: str
    train: Split  # or a set of places (GSV-Cities: datasets.places)
    val: Split
    test: Split
    model: nn.Module


def _start_fresh(cfg: RunConfig, extra: dict | None) -> Path:
    """A new run folder with the configuration, the model fitted from data where it takes that
    (``fit_from_data``) and its first checkpoint; then training and the test."""
    session = _prepare(cfg)
    run_dir = _new_training_dir(session, extra)

    def start(trainer) -> None:
        log.info(
            "train: %s on %s (%d database, %d queries), run %s",
            session.cfg.model.method,
            session.dataset_name,
            session.train.num_database,
            session.train.num_queries,
            run_dir,
        )
        fit_from_data(session.model, session.cfg, session.device, session.train)
        trainer.save()

    return _train_and_test(session, run_dir, extra, start)


def _resume(run_dir: Path, quiet: bool | None = None) -> Path:
    """The unfinished run in ``run_dir``, continued from its last checkpoint with its own configuration
    (``quiet``: the screen's, unless None)."""
    cfg, extra = _read_run_config(run_dir)
    if quiet is not None:
        cfg = dataclasses.replace(cfg, quiet=quiet)
    if not (run_dir / ckpt.LAST).is_file():
        raise VPRBenchError(
            f"--resume {run_dir}: the run stopped before its first checkpoint, so there is nothing to "
            f"resume (see its run.log); start it again without --resume: "
            f"vpr-bench run --config {run_dir / 'config.json'}"
        )
    state = ckpt.load_state(run_dir / ckpt.LAST)
    session = _prepare(cfg)

    def start(trainer) -> None:
        trainer.load_state_dict(state)
        log.info(
            "resume: %s from epoch %d, batch %d",
            run_dir,
            trainer.progress.epoch + 1,
            trainer.progress.position,
        )

    return _train_and_test(session, run_dir, extra, start)


def _read_run_config(run_dir: Path) -> tuple[RunConfig, dict | None]:
    """An unfinished run's configuration and the fields its record adds (``record_extra``)."""
    if not run_dir.is_dir():
        what = "is a file, not a run folder" if run_dir.exists() else "does not exist"
        raise VPRBenchError(f"--resume {run_dir}: this folder {what}; give the folder of the interrupted run")
    if not (run_dir / "config.json").is_file():
        raise VPRBenchError(f"--resume {run_dir}: not a run folder (no config.json)")
    try:
        saved = json.loads((run_dir / "config.json").read_text())
        cfg, extra = RunConfig.from_dict(saved), saved.get("record_extra")
    except (OSError, ValueError, TypeError) as exc:
        raise VPRBenchError(f"--resume {run_dir}: cannot read its config.json ({exc})") from None
    if (run_dir / "metrics.json").exists():
        raise VPRBenchError(f"--resume {run_dir}: this run is finished (metrics.json exists)")
    return cfg, extra


def _prepare(cfg: RunConfig) -> _Training:
    """Join the other ranks (under ``torchrun``), seed, read the splits and build the model. A rank other
    than 0 works on a quiet copy of ``cfg``: one set of progress bars and logs, rank 0's."""
    check_trainable(cfg.model.method)  # an evaluation-only published model fails before any work
    if cfg.eval.no_labels or cfg.eval.descriptors:  # e.g. an eval's config.json replayed by run --config
        raise VPRBenchError("eval.no_labels and eval.descriptors apply to vpr-bench eval, not to training")
    distributed.init(cfg.eval.device)
    if not distributed.is_main():
        cfg = dataclasses.replace(cfg, quiet=True)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.eval.device)
    train = load_training_set(cfg)  # --dataset's train split, or --train-dataset's (GSV-Cities: places)
    dataset_name, val = load_split(cfg.data, "val")
    _, test = load_split(cfg.data, cfg.eval.split)
    for scored in (val, test):  # no ground truth or a wrong --soft-radius fails before training
        scored.require_labels()
        soft_ground_truth(scored, cfg.data.pos_radius, cfg.eval.soft_radius)
    return _Training(cfg, device, dataset_name, train, val, test, build_method(cfg.model))


def _new_training_dir(session: _Training, extra: dict | None) -> Path:
    """Rank 0 creates the run folder and its config.json; every rank gets its path."""
    cfg, main = session.cfg, distributed.is_main()
    if main:
        run_dir = new_run_dir(cfg.out, session.dataset_name, cfg.model.method)
        saved = {"argv": sys.argv, **cfg.to_dict(), **({"record_extra": extra} if extra else {})}
        atomic_write_json(run_dir / "config.json", saved)
    return Path(distributed.broadcast(str(run_dir) if main else None))


def _train_and_test(session: _Training, run_dir: Path, extra: dict | None, start: Callable) -> Path:
    """Build the method's trainer, ``start(trainer)`` (fresh or resumed), train; rank 0 then tests the
    best weights and writes the record."""

    cfg, main = session.cfg, distributed.is_main()
    handler = attach_log(run_dir) if main else logging.NullHandler()
    try:
        chosen = trainer_class(cfg, METHODS.get(cfg.model.method).spec.trainer)  # place batches: a mixin
        trainer = chosen(session.model, cfg, session.train, session.val, session.device, run_dir)
        start(trainer)
        started = time.perf_counter()
        progress = trainer.fit()
        if main:
            _test_and_record(session, trainer, progress, run_dir, extra, started)
    except BaseException as exc:
        log_failure(handler, exc)
        raise
    finally:
        log.removeHandler(handler)
        handler.close()
    return run_dir


def _test_and_record(
    session: _Training, trainer, progress, run_dir: Path, extra: dict | None, started: float
):
    """The best weights (finalised where the model fits something after training) on the test split, and
    the run's record."""
    model, cfg, device = session.model, session.cfg, session.device
    ckpt.load_best(model, run_dir)
    if fit_from_data(model, cfg, device, session.train, phases=("finalise",)):  # e.g. NetVLAD's whitening
        ckpt.save_weights(run_dir / ckpt.BEST, model)
    weights = f"trained from {getattr(model, 'backbone_facts', {}).get('weights', 'unknown')}"
    header = record_header(cfg, session.dataset_name, "run", weights, True)
    keep = descriptor_saver(run_dir, session.test, cfg, header)
    evaluation = evaluate(model, session.test, cfg, device, run_dir=run_dir, keep=keep)
    write_predictions(run_dir, evaluation.predictions)
    report = trainer.report(session.test, query_descriptors=evaluation.query_descriptors)  # asymmetric
    record = {
        **header,
        **evaluation.sections(),
        **kept_fields(cfg),
        **report,
        **(extra or {}),
        "training": training_section(trainer, progress, started),
        "budget": training_budget(cfg, progress, device, model),
    }
    write_record(run_dir, {"argv": sys.argv, **cfg.to_dict()}, record)
    log.info("test: %s", "  ".join(f"{k} {v:.2f}" for k, v in evaluation.metrics.items()))
