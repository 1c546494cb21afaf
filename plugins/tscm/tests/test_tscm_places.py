"""The TSCM teacher and student on place batches (``--recipe gsv``): the student's loss is the recipe's
metric loss plus the unchanged distillation loss over every triplet of the P × K batch, its pairs mined
in the teacher's space by default."""

import json

import pytest
import torch
from tscm.trainer import DistillationTrainer

from vpr_bench.api import train as train_run
from vpr_bench.testing import tiny_config

PLACES = {
    "recipe.name": "gsv",
    "recipe.places_per_batch": 3,
    "recipe.places_per_epoch": 6,
    "train.epochs": 1,
    "train.lr": 1e-3,
    "eval.batch_size": 32,
}


def config(root, out, tiny_tscm, method, **extra):
    values = {"data.dataset": f"folder:{root}", "out": str(out), **tiny_tscm, **PLACES, **extra}
    return tiny_config(**{"model.method": method, **values})


def record(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def place_teacher(synthetic_root, tmp_path_factory, tiny_tscm):
    return train_run(config(synthetic_root, tmp_path_factory.mktemp("teacher"), tiny_tscm, "tscm-teacher"))


def test_the_teacher_trains_on_place_batches(place_teacher):
    budget = record(place_teacher)["budget"]
    assert budget["recipe"] == "gsv" and budget["places_seen"] == 6 and budget["loss"] == "multi-similarity"


@pytest.mark.parametrize("mining_space", ["teacher", "student"])
def test_the_student_adds_the_kd_loss_over_every_triplet_of_the_batch(
    synthetic_root, place_teacher, tiny_tscm, tmp_path, monkeypatch, mining_space
):
    seen = []
    original = DistillationTrainer.compute_loss

    def check(self, embeddings, triplets, images, tuple_ids):
        total = original(self, embeddings, triplets, images, tuple_ids)
        hard = super(DistillationTrainer, self).compute_loss(embeddings, triplets, images, tuple_ids)
        with torch.no_grad():
            teacher = self.teacher(images)
            kd = self.kd_loss(embeddings, teacher, triplets)
            mined_in = self.mining_embeddings(embeddings, images, tuple_ids)
        seen.append(
            (
                total.item(),
                hard.item(),
                kd.item(),
                len(triplets[0]),
                len(images),
                mined_in,
                embeddings,
                teacher,
            )
        )
        return total

    monkeypatch.setattr(DistillationTrainer, "compute_loss", check)
    cfg = config(synthetic_root, tmp_path, tiny_tscm, "tscm-student")
    cfg.distill.teacher, cfg.distill.kd_loss, cfg.distill.mining_space = (
        str(place_teacher),
        "cross-metric",
        mining_space,
    )
    run_dir = train_run(cfg)
    assert len(seen) == 2  # 6 places an epoch, 3 a batch
    for total, hard, kd, triplets, images, mined_in, student, teacher in seen:
        assert images == 12 and triplets == 12 * 3 * 8  # every (a, p, n) of 3 places × 4 images
        assert kd > 1e-3 and total == pytest.approx(hard + kd, rel=1e-4)
        expected = teacher if mining_space == "teacher" else student.detach()
        torch.testing.assert_close(mined_in, expected, atol=1e-5, rtol=1e-4)
    result = record(run_dir)
    assert result["budget"]["recipe"] == "gsv" and result["distillation"]["kd_loss"] == "cross-metric"
    assert result["distillation"]["mining_space"] == mining_space
