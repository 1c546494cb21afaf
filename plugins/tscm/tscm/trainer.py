"""Student distillation on vpr-bench's training engine: the engine's mining, checkpoints and resume, with a
frozen teacher's descriptors as the reference embeddings of the distillation loss.

The teacher is frozen in eval mode (the release keeps it in train mode under ``no_grad``, so its dropout
and batch-norm statistics stay live — a bug we do not reproduce). Its descriptors of the training images
are computed once (it never changes) and looked up per batch; when they would not fit in
``TEACHER_CACHE_BYTES``, or when a place recipe augments or resizes the training images, the teacher
embeds each batch instead (the student's own pixels). They, and its descriptors of the test
database for the asymmetric evaluation, are stored in the teacher's run folder
(``teacher-descriptors/``, keyed by weights file, images and preprocessing), so the next student of the
same teacher (``ablate``, ``--seeds`` with ``--teacher``) reads them instead of extracting them again.
Tuples are mined in the teacher's descriptor space by default, as the release does
(``--mining-space student`` for the student's own).

With place batches (``--recipe gsv``) the engine's ``PlaceBatches`` comes after this trainer: the
student's metric loss is the recipe's (Multi-Similarity over the batch's places, its miner's pairs picked
in the teacher's space by default), and the distillation loss is unchanged, taken over every (anchor,
positive, negative) of the P × K batch: the cross-metric terms pull S(a) to T(p) and S(p) to T(a) for
every two images of one place (K − 1 positives per anchor instead of the one mined positive), and the
soft terms hold every image's S(x) to its T(x).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tscm.losses import build_kd_loss
from vpr_bench.api import (
    CheckpointError,
    ConfigError,
    RunConfig,
    Trainer,
    distributed,
    load_model,
)
from vpr_bench.api import evaluate_model as evaluate
from vpr_bench.api import training_state as ckpt

log = logging.getLogger(__name__)
TEACHER_CACHE_BYTES = 4 << 30
DEFAULT_KD_LOSS = "cross-metric"


def kd_loss_of(cfg: RunConfig) -> str:
    """The distillation loss a configuration trains with: ``--kd-loss``, else the paper's."""
    return cfg.distill.kd_loss or DEFAULT_KD_LOSS
TEACHER = "tscm-teacher"


def run_weights(spec: str | Path, option: str = "--teacher") -> tuple[Path, Path | None]:
    """A run folder (its best weights and config) or a weights file given as ``option``;
    (weights, run dir or None). Errors name the option."""
    path = Path(spec)
    if path.is_dir():
        check_run_method(path, option)
        weights = path / ckpt.BEST
        if not weights.is_file():
            raise CheckpointError(f"{option} {path}: no {ckpt.BEST} in this run folder (is it finished?)")
        return weights, path
    if path.is_file():
        return path, None
    raise ConfigError(f"{option} {path} does not exist (give a run folder or a weights file)")


def check_run_method(run_dir: Path, option: str) -> None:
    """Refuse, before any work, a run folder of another method than ``option`` takes (``--teacher``: a
    tscm-teacher run, ``--checkpoint``: a tscm-student run), or a folder of several runs."""
    from vpr_bench.api import refuse_folder_of_runs

    expected = {"--teacher": TEACHER, "--checkpoint": "tscm-student"}.get(option)
    try:
        method = json.loads((run_dir / "config.json").read_text())["model"]["method"]
    except (OSError, ValueError, KeyError, TypeError):
        if not (run_dir / ckpt.BEST).is_file():
            refuse_folder_of_runs(run_dir, option)
        return  # a folder holding a weights file: judged by the file
    if expected is not None and method != expected:
        fix = (
            "drop --teacher to train one" if option == "--teacher" else f"evaluate it with --method {method}"
        )
        raise ConfigError(
            f"{option} {run_dir} is a {method} run, not a {expected} run: give a run folder from "
            f"<results>/<dataset>/{expected}/, or {fix}"
        )


def load_teacher(
    cfg: RunConfig, teacher: str | Path | None = None, device: torch.device | str = "cpu"
) -> nn.Module:
    """The frozen teacher ``teacher`` (default: ``cfg.distill.teacher``): a teacher run (built with its own
    run's model settings), a weights file of ours (built with this run's), or the TSCM release's own
    ``ckpt_best.pth.tar`` (built as the release's architecture). ``teacher.weights`` says which."""
    teacher = teacher or cfg.distill.teacher
    if not teacher:
        raise ConfigError("the tscm student needs a teacher: --teacher RUN_DIR (or run --method tscm)")
    weights, run_dir = run_weights(teacher)
    if run_dir is not None and (run_dir / "config.json").is_file():
        model_cfg = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text())).model
    else:
        model_cfg = dataclasses.replace(cfg.model, method=TEACHER)
    model, loaded = load_model(model_cfg, weights, device)  # the file decides, e.g. the release's variant
    model.weights = loaded.description
    return freeze(model)


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class DistillationTrainer(Trainer):
    """Trains a student against the frozen teacher named by ``cfg.distill.teacher`` (or ``teacher``)."""

    def __init__(
        self, student, cfg, train_split, val_split, device, run_dir, teacher: nn.Module | None = None
    ):
        super().__init__(student, cfg, train_split, val_split, device, run_dir)
        self.teacher = freeze(teacher if teacher is not None else load_teacher(cfg)).to(device)
        if self.teacher.descriptor_dim != student.descriptor_dim:
            raise ConfigError(
                f"teacher ({self.teacher.descriptor_dim}-d) and student ({student.descriptor_dim}-d) "
                "descriptors must have one size: use the same --descriptor-dim for both"
            )
        self.kd_name = kd_loss_of(cfg)
        self.kd_loss = build_kd_loss(self.kd_name, student.descriptor_dim).to(device)
        self.kd_weight = cfg.distill.kd_weight
        extra = [p for p in self.kd_loss.parameters() if p.requires_grad]  # e.g. STUN's variance head
        if extra:
            self.optimizer.add_param_group({"params": extra})
            # the scheduler was built before this group existed: give it the group's base lr too
            self.scheduler.base_lrs.append(self.tc.lr)
        self._teacher_cache: np.ndarray | None = None  # (database + queries, D): the training images
        cache_bytes = 4 * student.descriptor_dim * (train_split.num_database + train_split.num_queries)
        # augmented or resized training images (place batches): the teacher describes the student's pixels
        same_pixels = cfg.recipe.augment == "none" and not cfg.recipe.train_image_size
        self.cache_teacher = cache_bytes <= TEACHER_CACHE_BYTES and same_pixels

    # ---- teacher descriptors ------------------------------------------------------------------------
    def stored(self, label: str, paths: list, compute) -> dict[str, np.ndarray]:
        """``compute()``'s arrays, read from the teacher run's descriptor store when an earlier student
        stored them for the same weights file, image list and preprocessing; stored after computing."""
        weights, run_dir = run_weights(self.cfg.distill.teacher) if self.cfg.distill.teacher else (None, None)
        if run_dir is None:  # a weights file (or a teacher object): no folder of its own to store in
            return compute()
        stat = weights.stat()
        data = self.cfg.data
        key = json.dumps(
            [str(weights.resolve()), stat.st_mtime_ns, stat.st_size, [str(p) for p in paths],
             list(data.image_size), data.preprocess, data.interpolation, self.teacher.descriptor_dim],
        )  # fmt: skip
        path = run_dir / "teacher-descriptors" / f"{label}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
        try:
            with np.load(path) as stored:
                arrays = {name: stored[name] for name in stored.files}
            log.info("teacher descriptors (%s) read from %s", label, path)
            return arrays
        except (OSError, ValueError, KeyError):
            pass
        arrays = compute()
        if distributed.is_main():
            try:
                path.parent.mkdir(exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
                np.savez(tmp, **arrays)
                os.replace(tmp, path)  # atomic: a reader sees the whole file or none
            except OSError as exc:
                log.warning("could not store teacher descriptors in %s (%s)", path.parent, exc)
        return arrays

    def teacher_cache(self) -> tuple[np.ndarray, np.ndarray]:
        """Teacher descriptors of every training query and database image, computed once: (queries,
        database), views of one table of the training images' rows [database; queries]."""
        if self._teacher_cache is None:
            split = self.train_split
            with self.phase("teacher cache"):
                arrays = self.stored(
                    "train-rows", [*split.database_paths, *split.query_paths], self._describe_training_images
                )
            self._teacher_cache = arrays["table"]
        n = self.train_split.num_database
        return self._teacher_cache[n:], self._teacher_cache[:n]

    def _describe_training_images(self) -> dict[str, np.ndarray]:
        """The teacher's descriptors of the training database, then of its queries (a set of places may
        have none), as one table."""
        split = self.train_split
        parts = [self.extract_sharded(self.teacher, split.database_paths, "teacher: database")]
        if split.num_queries:
            parts.append(self.extract_sharded(self.teacher, split.query_paths, "teacher: queries"))
        return {"table": np.concatenate(parts)}

    def cache_descriptors(self, query_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.cfg.distill.mining_space == "student":
            return super().cache_descriptors(query_rows)
        if self.cache_teacher:
            return self.teacher_cache()
        return self.describe(self.teacher, query_rows, "teacher")

    def teacher_embeddings(self, images: torch.Tensor, tuple_ids: torch.Tensor) -> torch.Tensor:
        """The teacher's descriptors of the batch's images, in its row order."""
        if not self.cache_teacher:
            with torch.no_grad():
                return self.teacher(images)
        self.teacher_cache()
        return torch.from_numpy(self._teacher_cache[self.image_rows(tuple_ids)]).to(self.device)

    def mining_embeddings(self, embeddings, images, tuple_ids) -> torch.Tensor:
        """Place batches: the space the recipe's miner picks pairs in (``--mining-space``)."""
        if self.cfg.distill.mining_space == "student":
            return embeddings.detach()
        return self.teacher_embeddings(images, tuple_ids)

    # ---- loss ---------------------------------------------------------------------------------------
    def compute_loss(self, embeddings, triplets, images, tuple_ids) -> torch.Tensor:
        # the student's own metric loss: the triplet loss, or on place batches the recipe's
        hard = super().compute_loss(embeddings, triplets, images, tuple_ids)
        if self.kd_weight == 0 or self.kd_name == "none":
            return hard
        teacher = self.teacher_embeddings(images, tuple_ids)
        return hard + self.kd_weight * self.kd_loss(embeddings, teacher, triplets)

    # ---- state and report ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**super().state_dict(), "kd_loss": self.kd_loss.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.kd_loss.load_state_dict(state.get("kd_loss", {}))

    def report(self, test_split, query_descriptors=None) -> dict:
        """Distillation facts and the asymmetric retrieval (queries: student, database: teacher); the
        student's test-query descriptors come from its own test evaluation, the teacher's test database
        from the store when an earlier student put it there."""
        teacher_db = self.stored(
            "test-database",
            list(test_split.database_paths),
            lambda: {
                "database": self.extract_alone(self.teacher, test_split.database_paths, "teacher: test")
            },
        )["database"]
        given = {"database": teacher_db}
        if query_descriptors is not None:
            given["queries"] = query_descriptors
        asymmetric = evaluate(
            self.model,
            test_split,
            self.cfg,
            self.device,
            database_model=self.teacher,
            count_flops=False,
            time_model=False,  # the student's own record already holds its cost figures
            given=given,
        )
        return {
            "distillation": {
                "kd_loss": self.kd_name,
                "kd_weight": self.kd_weight,
                "mining_space": self.cfg.distill.mining_space,
                "teacher": str(self.cfg.distill.teacher),
                "teacher_weights": getattr(self.teacher, "weights", None),
                "teacher_params": sum(p.numel() for p in self.teacher.parameters()),
            },
            "asymmetric": {
                "query_model": "student",
                "database_model": "teacher",
                "metrics": asymmetric.metrics,
            },
        }
