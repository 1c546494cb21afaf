"""Student distillation on the engine: frozen teacher, resume equivalence (KD-loss state included)."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from tscm.trainer import DistillationTrainer, load_teacher

from vpr_bench.api import build_method, load_split
from vpr_bench.api import train as train_run
from vpr_bench.api import training_state as ckpt
from vpr_bench.testing import TINY_TRAINING, load_rgb, tiny_config

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


# ---- the distillation trainer's pieces, on a real mined round ------------------------------------------


class FirstBatch(Exception):
    """Stops training at the first batch, carrying compute_loss's arguments."""


@pytest.fixture(scope="module")
def splits(synthetic_root):
    data = tiny_config(**{"data.dataset": f"folder:{synthetic_root}"}).data
    return load_split(data, "train")[1], load_split(data, "val")[1]


def distillation_trainer(root, splits, tiny_tscm, teacher_run, run_dir, train=(), **distill):
    """A fresh student (seeded) taught by the teacher run, for one epoch; ``train``: more config
    values; ``distill``: DistillConfig fields."""
    cfg = config(root, run_dir, tiny_tscm, "tscm-student", **{"train.epochs": 1, **dict(train)})
    cfg.distill = dataclasses.replace(cfg.distill, teacher=str(teacher_run), **distill)
    run_dir.mkdir(parents=True, exist_ok=True)  # as new_run_dir leaves it
    torch.manual_seed(0)
    student = build_method(cfg.model)
    return DistillationTrainer(student, cfg, *splits, torch.device("cpu"), run_dir, teacher=load_teacher(cfg))


def first_batch(trainer, monkeypatch):
    """(embeddings, triplets, images, tuple_ids) of the first batch the trainer trains on: its own
    mining of round 1 and its own loader."""

    def stop(self, *args):
        raise FirstBatch(*args)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", stop)
    with pytest.raises(FirstBatch) as caught:
        trainer.fit()
    monkeypatch.undo()
    return caught.value.args


def embed(model, paths, transform) -> torch.Tensor:
    """``model``'s L2-normalised descriptors of ``paths``, one forward pass in eval mode."""
    images = torch.stack([transform(load_rgb(p)) for p in paths])
    with torch.no_grad():
        return torch.nn.functional.normalize(model.eval()(images), dim=1)


def test_cached_teacher_rows_are_the_teachers_descriptors_of_the_batch_images(
    synthetic_root, splits, tiny_tscm, teacher_run, tmp_path, monkeypatch
):
    # up to 6 negatives within a small margin: some tuples have fewer (-1 entries, not in the batch)
    more_negatives = {"train.negatives": 6, "train.mining_margin": 0.03}
    trainer = distillation_trainer(
        synthetic_root, splits, tiny_tscm, teacher_run, tmp_path, train=more_negatives
    )
    assert trainer.cache_teacher
    batches = []
    original = DistillationTrainer.compute_loss

    def check(self, embeddings, triplets, images, tuple_ids):
        with torch.no_grad():
            direct = self.teacher(images)
        fewer = bool((self.round_tuples.negatives[tuple_ids.numpy()] < 0).any())
        batches.append((images, self.teacher_embeddings(images, tuple_ids), direct, fewer))
        return original(self, embeddings, triplets, images, tuple_ids)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", check)
    trainer.fit()  # one epoch: mining in the teacher's space, then every batch of the round, shuffled
    assert len(batches) >= 2 and any(fewer for *_, fewer in batches)
    for images, cached, direct, _ in batches:
        assert cached.shape == direct.shape and len(direct) > 3
        torch.testing.assert_close(cached, direct, atol=1e-5, rtol=1e-4)
        # a row out of place would fail: different images of the batch (one may recur, e.g. a negative
        # of two tuples) have teacher descriptors far apart at that tolerance
        pixels = images.flatten(1)
        same_image = (pixels[:, None] == pixels[None]).all(dim=2)
        apart = (direct[:, None] - direct[None]).abs().amax(dim=2)
        assert apart[~same_image].min() > 1e-3


def test_mining_happens_in_the_teachers_space_by_default_and_the_students_on_request(
    synthetic_root, splits, tiny_tscm, teacher_run, tmp_path
):
    train = splits[0]
    rows = np.array([0, 2, 5])
    by_teacher = distillation_trainer(synthetic_root, splits, tiny_tscm, teacher_run, tmp_path / "t")
    by_student = distillation_trainer(
        synthetic_root, splits, tiny_tscm, teacher_run, tmp_path / "s", mining_space="student"
    )
    transform = by_teacher.transform
    teacher_db = embed(by_teacher.teacher, train.database_paths, transform)
    teacher_q = embed(by_teacher.teacher, train.query_paths, transform)
    student_db = embed(by_student.model, train.database_paths, transform)
    student_q = embed(by_student.model, [train.query_paths[i] for i in rows], transform)
    assert not torch.allclose(teacher_db, student_db, atol=1e-2)  # the two spaces differ

    queries, db = by_teacher.cache_descriptors(rows)
    torch.testing.assert_close(torch.from_numpy(db), teacher_db, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(queries), teacher_q, atol=1e-5, rtol=1e-4)

    queries, db = by_student.cache_descriptors(rows)
    torch.testing.assert_close(torch.from_numpy(db), student_db, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(queries[rows]), student_q, atol=1e-5, rtol=1e-4)

    by_teacher.cache_teacher = False  # a training set too large to cache: the teacher describes each round
    queries, db = by_teacher.cache_descriptors(rows)
    torch.testing.assert_close(torch.from_numpy(db), teacher_db, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(queries[rows]), teacher_q[rows], atol=1e-5, rtol=1e-4)


def test_the_student_loss_is_its_triplet_loss_plus_kd_weight_times_the_kd_term(
    synthetic_root, splits, tiny_tscm, teacher_run, tmp_path, monkeypatch
):
    make = lambda name, **distill: distillation_trainer(  # noqa: E731
        synthetic_root, splits, tiny_tscm, teacher_run, tmp_path / name, **distill
    )
    reference = make("reference")
    batch = first_batch(reference, monkeypatch)
    embeddings, triplets, images, tuple_ids = batch
    assert len(triplets[0]) > 1
    hard = reference.loss_fn(embeddings, indices_tuple=triplets)
    with torch.no_grad():
        kd = reference.kd_loss(embeddings, reference.teacher(images), triplets)
    assert kd.item() > 1e-3  # a KD term that could go missing

    def loss(trainer):
        trainer.round_tuples = reference.round_tuples  # the round the batch comes from
        return trainer.compute_loss(*batch).item()

    by_weight = {w: loss(make(f"w{w}", kd_weight=w)) for w in (0.0, 0.5, 1.0, 2.0)}
    assert by_weight[0.0] == pytest.approx(hard.item(), rel=1e-6)
    for w, value in by_weight.items():
        assert value == pytest.approx(hard.item() + w * kd.item(), rel=1e-5)
    assert by_weight[2.0] - by_weight[1.0] == pytest.approx(by_weight[1.0] - by_weight[0.0], rel=1e-4)
    assert loss(make("none", kd_loss="none")) == pytest.approx(by_weight[0.0], rel=1e-6)
    assert loss(reference) == pytest.approx(by_weight[1.0], rel=1e-6)  # the default weight is 1
