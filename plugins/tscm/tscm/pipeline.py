"""``vpr-bench run/ablate/eval --method tscm``: teacher → frozen → distilled student(s), linked records.

One ``pipeline`` id ties a teacher and its students; each student record names its teacher run and holds
the asymmetric recall (queries: student, database: teacher) beside its own.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from pathlib import Path

from tscm.trainer import kd_loss_of, run_weights
from vpr_bench.api import ConfigError, RunConfig, write_ablation_table
from vpr_bench.api import train as train_run

log = logging.getLogger("vpr_bench")
TEACHER, STUDENT = "tscm-teacher", "tscm-student"


def _role(cfg: RunConfig, method: str) -> RunConfig:
    role = copy.deepcopy(cfg)
    role.model.method = method
    return role


def _teacher(cfg: RunConfig, pipeline: dict) -> str:
    """The teacher run folder or weights file: ``--teacher`` if given, else one trained now."""
    if cfg.distill.teacher:
        run_weights(cfg.distill.teacher)  # fails early, naming the option, if it is not usable
        log.info("tscm: reusing teacher %s", cfg.distill.teacher)
        return cfg.distill.teacher
    log.info("tscm: training the teacher")
    return str(train_run(_role(cfg, TEACHER), extra={"pipeline": {**pipeline, "role": "teacher"}}))


def _student(cfg: RunConfig, teacher: str, kd_loss: str, pipeline: dict) -> Path:
    student = _role(cfg, STUDENT)
    student.distill.teacher, student.distill.kd_loss = teacher, kd_loss
    log.info("tscm: distilling the student with --kd-loss %s", kd_loss)
    extra = {"pipeline": {**pipeline, "role": "student", "teacher_run": teacher}}
    return train_run(student, extra=extra)


def _new_pipeline(kind: str) -> dict:
    return {"name": "tscm", "kind": kind, "id": uuid.uuid4().hex[:12]}


def run(cfg: RunConfig) -> list[Path]:
    """Train (or reuse) the teacher, distil one student, test both; the run folders written: [teacher
    run, student run], or [student run] when ``--teacher`` reuses one."""
    kd_loss = kd_loss_of(cfg)
    pipeline = _new_pipeline("run")
    teacher = _teacher(cfg, pipeline)
    student = _student(cfg, teacher, kd_loss, pipeline)
    return [student] if cfg.distill.teacher else [Path(teacher), student]


def ablate(cfg: RunConfig, kd_losses: list[str], seeds: tuple[int, ...] | None = None) -> Path:
    """One teacher, one student per KD loss (same seed and budget); with ``seeds``, a teacher and its
    students per seed and the table of seed means (mean ± std). The folder of the ablation table
    (Markdown, CSV, LaTeX; the renderer of ``vpr-bench compare``)."""
    if not kd_losses:
        raise ConfigError("--kd-loss: give at least one distillation loss (comma-separated)")
    pipeline = _new_pipeline("ablation")
    runs = []
    for seed in seeds or (cfg.seed,):
        one = copy.deepcopy(cfg)
        one.seed = seed
        teacher = _teacher(one, pipeline)
        runs += [_student(one, teacher, name, pipeline) for name in kd_losses]
    out = write_ablation_table(runs, "tscm-ablation", pipeline["id"], seed_mean=bool(seeds))
    log.info("tscm: ablation table in %s", out)
    return out


def evaluate(
    cfg: RunConfig, checkpoint: str | None, query_model: str, database_model: str, untrained: bool
) -> Path:
    """Symmetric or asymmetric evaluation of a trained pair: ``checkpoint`` is a student run folder
    (its record names its teacher) or, with ``--teacher``, any student weights; ``--untrained`` builds
    both fresh (random heads, pretrained backbones when available)."""
    from vpr_bench.api import build_method, load_split, resolve_device, seed_everything
    from vpr_bench.api import evaluate as evaluate_and_record

    roles = {query_model, database_model}
    if not roles <= {"teacher", "student"}:
        raise ConfigError("--query-model and --database-model must be teacher or student")
    if not untrained and not checkpoint:
        raise ConfigError("tscm eval needs --checkpoint STUDENT_RUN_DIR (or --untrained)")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.eval.device)
    if untrained:
        models = {role: build_method(_role(cfg, f"tscm-{role}").model) for role in roles}
    else:  # weights first: a wrong path fails before the dataset is read
        student_weights, student_dir = run_weights(checkpoint, "--checkpoint")
        cfg = _with_teacher_of(cfg, student_dir)
        models = _trained_pair(cfg, student_weights, roles)
    dataset_name, split = load_split(cfg.data, cfg.eval.split)
    query, database = models[query_model], models[database_model]
    log.info("tscm eval: queries described by the %s, database by the %s", query_model, database_model)
    return evaluate_and_record(
        cfg,
        query,
        split,
        dataset_name,
        device,
        weights="untrained" if untrained else f"checkpoint:{checkpoint}",
        trained=not untrained,
        database_model=None if query is database else database,
        extra={
            "roles": {"query_model": query_model, "database_model": database_model},
            "distillation": {"teacher": cfg.distill.teacher},
        },
        method="tscm",
    )


def _with_teacher_of(cfg: RunConfig, student_dir: Path | None) -> RunConfig:
    """``cfg``, or where it names no teacher and a student run is given, a copy naming the teacher that
    run was distilled from."""
    if cfg.distill.teacher or student_dir is None:
        return cfg
    saved = json.loads((student_dir / "config.json").read_text())
    with_teacher = copy.deepcopy(cfg)
    with_teacher.distill.teacher = saved.get("distill", {}).get("teacher")
    return with_teacher


def _trained_pair(cfg: RunConfig, student_weights: Path, roles: set[str]) -> dict:
    """The models of ``roles``: the teacher ``cfg`` names, the student in ``student_weights`` (the file
    decides the student's architecture, not this run's data settings)."""
    from tscm.trainer import load_teacher
    from vpr_bench.api import load_model

    models = {}
    if "teacher" in roles:
        models["teacher"] = load_teacher(cfg)
    if "student" in roles:
        models["student"], _ = load_model(_role(cfg, STUDENT).model, student_weights)
    return models
