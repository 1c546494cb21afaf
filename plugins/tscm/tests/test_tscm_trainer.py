"""Student distillation on the engine: frozen teacher, resume equivalence (KD-loss state included)."""

import json

import pytest
import torch
from tscm.trainer import DistillationTrainer, load_teacher

from vpr_bench.runner import train_run
from vpr_bench.testing import TINY_TRAINING, tiny_config
from vpr_bench.training import checkpoint as ckpt

TRAIN = TINY_TRAINING


def config(root, out, tiny_tscm, method, **extra):
    values = {"data.dataset": f"folder:{root}", "out": str(out), **tiny_tscm, **TRAIN, **extra}
    return tiny_config(**{"model.method": method, **values})


def record(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def teacher_run(synthetic_root, tmp_path_factory, tiny_tscm):
    return train_run(config(synthetic_root, tmp_path_factory.mktemp("teacher"), tiny_tscm, "tscm-teacher"))


def student_config(root, out, tiny_tscm, teacher_run, kd_loss="stun"):
    cfg = config(root, out, tiny_tscm, "tscm-student")
    cfg.distill.teacher, cfg.distill.kd_loss = str(teacher_run), kd_loss
    return cfg


def test_the_teacher_is_frozen_in_eval_mode_and_loaded_from_its_run(teacher_run, tiny_tscm, tmp_path):
    cfg = config(tmp_path, tmp_path, tiny_tscm, "tscm-student")
    cfg.distill.teacher = str(teacher_run)
    teacher = load_teacher(cfg)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    saved = ckpt.load_state_dict(teacher_run / ckpt.BEST)
    assert all(torch.equal(saved[k], v) for k, v in teacher.state_dict().items())


def test_student_resume_after_a_crash_equals_uninterrupted(
    synthetic_root, teacher_run, tiny_tscm, tmp_path, monkeypatch
):
    full = record(train_run(student_config(synthetic_root, tmp_path / "full", tiny_tscm, teacher_run)))
    assert full["distillation"]["kd_loss"] == "stun"
    calls = {"n": 0}
    original = DistillationTrainer.compute_loss

    def crash_at_step_5(self, *args):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2, batch 2: like SIGKILL, nothing saved on the way out
            raise RuntimeError("killed")
        return original(self, *args)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", crash_at_step_5)
    with pytest.raises(RuntimeError, match="killed"):
        train_run(student_config(synthetic_root, tmp_path / "crash", tiny_tscm, teacher_run))
    monkeypatch.undo()
    (run_dir,) = (tmp_path / "crash").glob("*/tscm-student/*")
    state = ckpt.load_state(run_dir / ckpt.LAST)
    assert "variance.0.weight" in "".join(state["kd_loss"])  # STUN's head is part of the checkpoint
    resumed = record(train_run(resume=run_dir))
    assert resumed["metrics"] == pytest.approx(full["metrics"], abs=1e-9)
    assert resumed["asymmetric"]["metrics"] == pytest.approx(full["asymmetric"]["metrics"], abs=1e-9)
    assert [h["loss"] for h in resumed["training"]["history"]] == pytest.approx(
        [h["loss"] for h in full["training"]["history"]], rel=1e-5
    )
