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

from tscm.trainer import DEFAULT_KD_LOSS, run_weights
from vpr_bench._io import atomic_write_text
from vpr_bench.config import RunConfig, apply_file_settings
from vpr_bench.errors import ConfigError
from vpr_bench.registry import KD_LOSSES
from vpr_bench.results.store import Record
from vpr_bench.results.table import ABLATION, build_table, render
from vpr_bench.runner import train_run

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
    kd_loss = cfg.distill.kd_loss or DEFAULT_KD_LOSS
    KD_LOSSES.get(kd_loss)
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
    for name in kd_losses:
        KD_LOSSES.get(name)
    pipeline = _new_pipeline("ablation")
    runs = []
    for seed in seeds or (cfg.seed,):
        one = copy.deepcopy(cfg)
        one.seed = seed
        teacher = _teacher(one, pipeline)
        runs += [_student(one, teacher, name, pipeline) for name in kd_losses]
    records = [Record(run, json.loads((run / "metrics.json").read_text())) for run in runs]
    columns = ABLATION if not seeds else (*ABLATION[:-1], "seeds")
    table = build_table(records, columns=columns, best=False, sort=None, seed_mean=bool(seeds))
    out = runs[-1].parent.parent / "tscm-ablation" / pipeline["id"]  # results/<dataset>/tscm-ablation/<id>
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ablation.md", render(table, "markdown"))
    atomic_write_text(out / "ablation.csv", render(table, "csv"))
    atomic_write_text(out / "ablation.tex", render(table, "latex"))
    log.info("tscm: ablation table in %s", out)
    return out


def evaluate(
    cfg: RunConfig, checkpoint: str | None, query_model: str, database_model: str, untrained: bool
) -> Path:
    """Symmetric or asymmetric evaluation of a trained pair: ``checkpoint`` is a student run folder
    (its record names its teacher) or, with ``--teacher``, any student weights; ``--untrained`` builds
    both fresh (random heads, pretrained backbones when available)."""
    from tscm.trainer import load_teacher
    from vpr_bench.checkpoints import load_weights, read_method_checkpoint
    from vpr_bench.datasets import load_split
    from vpr_bench.evaluation.engine import resolve_device
    from vpr_bench.methods import build_method
    from vpr_bench.runner import evaluate_and_record, seed_everything

    roles = {query_model, database_model}
    if not roles <= {"teacher", "student"}:
        raise ConfigError("--query-model and --database-model must be teacher or student")
    if not untrained and not checkpoint:
        raise ConfigError("tscm eval needs --checkpoint STUDENT_RUN_DIR (or --untrained)")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.eval.device)
    models = {}  # weights first: a wrong path fails before the dataset is read
    if untrained:
        models = {role: build_method(_role(cfg, f"tscm-{role}").model) for role in roles}
    else:
        student_weights, student_dir = run_weights(checkpoint, "--checkpoint")
        if not cfg.distill.teacher and student_dir is not None:
            saved = json.loads((student_dir / "config.json").read_text())
            cfg.distill.teacher = saved.get("distill", {}).get("teacher")
        if "teacher" in roles:
            models["teacher"] = load_teacher(cfg)
        if "student" in roles:
            student_cfg = _role(cfg, STUDENT)
            student_cfg.model.pretrained = False
            read = read_method_checkpoint(STUDENT, student_weights)
            # the release's own student file decides its architecture (not this run's data settings)
            apply_file_settings(
                student_cfg, {k: v for k, v in read.settings.items() if k.startswith("model.")}
            )
            models["student"] = build_method(student_cfg.model)
            load_weights(models["student"], read, STUDENT)
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
