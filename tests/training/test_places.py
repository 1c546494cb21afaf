"""Place batches (``--recipe gsv``): the P × K sampler, a split grouped into places, pml's loss and miner,
a GSV-Cities tree trained end to end, resume after a crash, the recipe's values."""

import json

import numpy as np
import pytest
import torch
from pytorch_metric_learning import distances, losses, miners

from tests.conftest import tiny_config
from vpr_bench.config import resolve
from vpr_bench.datasets import load_split
from vpr_bench.datasets.gsv_cities import GSVCities
from vpr_bench.datasets.places import group_split
from vpr_bench.errors import ConfigError
from vpr_bench.runner import train_run
from vpr_bench.testing import TINY_CLI, make_gsv_cities, run_cli
from vpr_bench.training import state as ckpt
from vpr_bench.training.places import PlaceBatches, PlaceSampler, place_triplets
from vpr_bench.training.trainer import Trainer

# 4 places × 4 images a batch, 12 places an epoch (3 batches), 2 epochs, a checkpoint every 2 batches
PLACES = {
    "recipe.name": "gsv",
    "recipe.places_per_batch": 4,
    "recipe.places_per_epoch": 12,
    "train.epochs": 2,
    "train.lr": 1e-3,
    "train.checkpoint_every": 2,
    "eval.batch_size": 32,
}


def record(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def gsv_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gsv") / "gsv-cities"
    make_gsv_cities(root)
    return root


def gsv_config(gsv_root, val_root, out, **extra):
    values = {
        "data.dataset": f"folder:{val_root}",
        "recipe.train_dataset": "gsv-cities",
        "recipe.train_data_root": str(gsv_root),
        "recipe.train_cities": "London,Boston,OSL",
        "out": str(out),
        **PLACES,
    }
    return tiny_config(**{**values, **extra})


# ---- the sampler -----------------------------------------------------------------------------------


def test_every_batch_is_k_images_of_p_distinct_places_shuffled_within_cities(gsv_root):
    places = GSVCities("gsv-cities", gsv_root).load_places("London,Boston,OSL", 4)
    sampler = PlaceSampler(places, per_batch=4, per_place=4, per_epoch=0, seed=7)
    plan = sampler.epoch(0)
    assert plan.rows.shape == (11 // 4, 4, 4)  # one pass; the last, short batch is left out
    city_of = {int(p): n for n, (_, ids) in enumerate(places.groups) for p in ids}
    for batch_places, batch_rows in zip(plan.places, plan.rows, strict=True):
        assert len(set(batch_places.tolist())) == 4  # P distinct places
        for place, rows in zip(batch_places, batch_rows, strict=True):
            assert len(set(rows.tolist())) == 4 and set(rows.tolist()) <= set(places.members[place].tolist())
            assert len(set(places.labels[rows].tolist())) == 1
        cities = [city_of[int(p)] for p in batch_places]
        assert cities == sorted(cities)  # the cities follow each other in order (shuffle_all=False)
    assert len(set(plan.places.ravel().tolist())) == plan.places.size  # each place once in a pass
    again, other = sampler.epoch(0), sampler.epoch(1)
    assert np.array_equal(again.rows, plan.rows) and np.array_equal(again.seeds, plan.seeds)
    assert not np.array_equal(other.places, plan.places)  # reshuffled every epoch
    several = PlaceSampler(places, per_batch=4, per_place=4, per_epoch=30, seed=7).epoch(0)
    assert several.rows.shape == (7, 4, 4)  # 30 places an epoch: passes of 2 batches each
    assert all(len(set(b.tolist())) == 4 for b in several.places)
    with pytest.raises(ConfigError, match="--places-per-batch 12: the training set has 11 places"):
        PlaceSampler(places, per_batch=12, per_place=4, per_epoch=0, seed=7)


def test_place_triplets_are_every_anchor_positive_negative_of_the_batch():
    from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

    labels = torch.arange(3).repeat_interleave(4)  # 3 places × 4 images, place-major
    ours = {tuple(t) for t in torch.stack(place_triplets(3, 4, torch.device("cpu")), 1).tolist()}
    theirs = {tuple(t) for t in torch.stack(lmu.get_all_triplets_indices(labels), 1).tolist()}
    assert ours == theirs and len(ours) == 12 * 3 * 8


def test_a_split_is_grouped_into_places_apart_by_its_negative_radius(synthetic_root):
    data = tiny_config(**{"data.dataset": f"folder:{synthetic_root}"}).data
    _, split = load_split(data, "train")
    places = group_split(split, min_images=4)
    coords = np.concatenate([split.database_utm, split.query_utm])
    assert places.num_places >= 4 and places.paths == [*split.database_paths, *split.query_paths]
    for p, rows in enumerate(places.members):
        assert len(rows) >= 4 and (places.labels[rows] == p).all()
        spread = np.linalg.norm(coords[rows][:, None] - coords[rows][None], axis=2)
        assert spread.max() <= 2 * split.train_pos_radius
        others = np.concatenate([m for q, m in enumerate(places.members) if q != p])
        apart = np.linalg.norm(coords[rows][:, None] - coords[others][None], axis=2)
        assert apart.min() > split.train_neg_radius  # any two places' images: a true negative
    counted = places.info
    assert counted["places"] == places.num_places and counted["candidates_near_a_place"] > 0


# ---- pml's loss and miner, called (not re-implemented) --------------------------------------------------


def test_pml_multi_similarity_loss_and_miner_are_the_ones_called(
    gsv_root, synthetic_root, tmp_path, monkeypatch
):
    calls = {"loss": [], "miner": []}
    loss_forward, miner_forward = losses.MultiSimilarityLoss.forward, miners.MultiSimilarityMiner.forward

    def loss_spy(self, embeddings, labels=None, indices_tuple=None, *rest):
        calls["loss"].append((labels.clone(), indices_tuple))
        return loss_forward(self, embeddings, labels, indices_tuple, *rest)

    def miner_spy(self, embeddings, labels, *rest):
        pairs = miner_forward(self, embeddings, labels, *rest)
        calls["miner"].append(pairs)
        return pairs

    monkeypatch.setattr(losses.MultiSimilarityLoss, "forward", loss_spy)
    monkeypatch.setattr(miners.MultiSimilarityMiner, "forward", miner_spy)
    cfg = gsv_config(gsv_root, synthetic_root, tmp_path, **{"train.epochs": 1})
    run_dir = train_run(cfg)
    assert len(calls["loss"]) == 3 and len(calls["miner"]) == 3  # one of each per batch
    for (labels, pairs), mined in zip(calls["loss"], calls["miner"], strict=True):
        assert pairs is mined and len(labels) == 16 and len(set(labels.tolist())) == 4
        assert (labels.view(4, 4) == labels.view(4, 4)[:, :1]).all()  # place-major, K of each
    assert record(run_dir)["budget"]["loss"] == "multi-similarity"


def test_the_published_loss_and_miner_values(gsv_root, synthetic_root, tmp_path):
    cfg = gsv_config(gsv_root, synthetic_root, tmp_path)
    _, val = load_split(cfg.data, "val")
    places = GSVCities("gsv-cities", gsv_root).load_places("London,Boston,OSL", 4)
    from vpr_bench.methods import build_method

    trainer = PlaceBatches(build_method(cfg.model), cfg, places, val, torch.device("cpu"), tmp_path)
    loss, miner = trainer.loss_fn, trainer.miner
    assert type(loss) is losses.MultiSimilarityLoss and (loss.alpha, loss.beta, loss.base) == (1.0, 50.0, 0.0)
    assert isinstance(loss.distance, distances.DotProductSimilarity) and loss.distance.normalize_embeddings
    assert type(miner) is miners.MultiSimilarityMiner and miner.epsilon == 0.1
    assert isinstance(miner.distance, distances.CosineSimilarity)


# ---- GSV-Cities end to end: train, record, resume ----------------------------------------------------


@pytest.fixture(scope="module")
def gsv_run(gsv_root, synthetic_root, tmp_path_factory):
    steps = []
    original = Trainer.step

    def recording(self, loss, share, bar):
        steps.append(loss.item())
        return original(self, loss, share, bar)

    mp = pytest.MonkeyPatch()
    mp.setattr(Trainer, "step", recording)
    try:  # 3 passes over the 11 places an epoch: 6 batches of 4 × 4 images, 2 epochs
        cfg = gsv_config(gsv_root, synthetic_root, tmp_path_factory.mktemp("gsv-run"),
                         **{"recipe.places_per_epoch": 24})  # fmt: skip
        run_dir = train_run(cfg)
    finally:
        mp.undo()
    return run_dir, steps


def test_a_gsv_cities_tree_trains_and_the_loss_decreases(gsv_run):
    run_dir, steps = gsv_run
    assert len(steps) == 12
    assert np.mean(steps[-4:]) < 0.8 * np.mean(steps[:4]), steps
    result = record(run_dir)
    budget = result["budget"]
    assert budget["recipe"] == "gsv" and budget["train_dataset"] == "gsv-cities"
    assert (budget["places_per_batch"], budget["images_per_place"]) == (4, 4)
    assert budget["precision"] == "fp32" and budget["loss"] == "multi-similarity"
    assert budget["miner"] == "multi-similarity" and budget["epochs"] == 2
    assert budget["places_seen"] == 2 * 24 and budget["images_seen"] == 2 * 24 * 4
    assert "negatives" not in budget and "batch_size" not in budget  # the triplet recipe's
    assert [h["tuples"] for h in result["training"]["history"]] == [24, 24]  # places an epoch
    assert result["protocol"]["name"].endswith("-test-25m")  # validated and tested on the --dataset


def test_resume_after_a_crash_continues_the_place_batches(gsv_root, synthetic_root, tmp_path, monkeypatch):
    augmented = {"recipe.augment": "randaugment", "recipe.places_per_epoch": 12}
    full = record(train_run(gsv_config(gsv_root, synthetic_root, tmp_path / "full", **augmented)))
    calls = {"n": 0}
    original = PlaceBatches.compute_loss

    def crash_at_5(self, *args):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2, batch 2: like SIGKILL, nothing is saved on the way out
            raise RuntimeError("killed")
        return original(self, *args)

    monkeypatch.setattr(PlaceBatches, "compute_loss", crash_at_5)
    with pytest.raises(RuntimeError, match="killed"):
        train_run(gsv_config(gsv_root, synthetic_root, tmp_path / "crash", **augmented))
    monkeypatch.undo()
    (run_dir,) = (tmp_path / "crash").glob("*/*/*")
    state = ckpt.load_state(run_dir / ckpt.LAST)
    assert (state["progress"]["epoch"], state["progress"]["position"]) == (1, 1)  # after batch 4
    assert state["places"]["epoch"] == 1 and tuple(state["places"]["rows"].shape) == (3, 4, 4)
    resumed = record(train_run(resume=run_dir))
    assert resumed["metrics"] == pytest.approx(full["metrics"], abs=1e-9)
    assert [h["loss"] for h in resumed["training"]["history"]] == pytest.approx(
        [h["loss"] for h in full["training"]["history"]], rel=1e-5
    )


# ---- the synthetic demo: place batches from its training split ---------------------------------------


def test_the_demo_trains_gem_with_the_gsv_recipe_from_the_cli(synthetic_root, tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["run", "--method", "gem", "--dataset", f"folder:{synthetic_root}", "--preset", "demo",
            "--recipe", "gsv", *TINY_CLI, "--out", str(out), "--epochs", "1", "--places-per-batch", "3",
            "--places-per-epoch", "6"]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    (run_dir,) = out.glob("*/gem/*")
    budget = record(run_dir)["budget"]
    assert budget["recipe"] == "gsv" and budget["images_seen"] == 6 * 4
    assert budget["train_dataset"] == f"folder:{synthetic_root}"


# ---- the recipe's values -----------------------------------------------------------------------------


def test_the_gsv_recipe_states_mixvprs_values_and_flags_override_them():
    cfg = resolve("paper", {"model.method": "gem", "recipe.name": "gsv"})
    tc, r = cfg.train, cfg.recipe
    assert (tc.optimizer, tc.lr, tc.weight_decay, tc.lr_gamma, tc.epochs) == ("sgd", 0.05, 0.001, 0.3, 80)
    assert (r.places_per_batch, r.images_per_place, r.warmup_steps) == (120, 4, 650)
    assert (r.scheduler, r.milestones, r.augment) == ("multistep", (5, 10, 15, 25, 45), "randaugment")
    assert (tc.precision, tc.loss, r.miner, cfg.data.image_size) == (
        "fp16",
        "multi-similarity",
        "multi-similarity",
        (320, 320),
    )
    boq = resolve("paper", {"model.method": "gem", "recipe.name": "gsv-boq"})
    assert (boq.train.optimizer, boq.train.lr, boq.recipe.warmup_epochs, boq.recipe.places_per_batch) == (
        "adamw",
        1e-4,
        10,
        128,
    )
    assert resolve("paper", {"model.method": "gem", "recipe.name": "gsv", "train.lr": 0.01}).train.lr == 0.01
    demo = resolve("demo", {"model.method": "gem", "recipe.name": "gsv"})
    assert (demo.train.lr, demo.train.epochs, demo.data.image_size) == (1e-3, 12, (48, 64))  # the demo's
    assert (demo.recipe.places_per_batch, demo.recipe.places_per_epoch, demo.train.precision) == (
        10,
        250,
        "fp32",
    )
    with pytest.raises(ConfigError, match="--warmup-epochs needs place batches"):
        resolve("demo", {"model.method": "gem", "recipe.warmup_epochs": 2})


def test_a_place_loss_under_the_triplet_recipe_is_refused(synthetic_root):
    from vpr_bench.methods import build_method

    cfg = tiny_config(**{"data.dataset": f"folder:{synthetic_root}", "train.loss": "multi-similarity"})
    _, train = load_split(cfg.data, "train")
    with pytest.raises(ConfigError, match="--loss multi-similarity trains on place batches.*--recipe gsv"):
        Trainer(build_method(cfg.model), cfg, train, train, torch.device("cpu"), None)


def test_warm_up_then_the_step_schedule():
    from vpr_bench.training.optim import build_optimizer, warm_up

    cfg = resolve("paper", {"model.method": "gem", "recipe.name": "gsv", "recipe.milestones": (1, 2)})
    model = torch.nn.Linear(2, 2)
    optimizer, scheduler = build_optimizer(model, cfg.train, cfg.recipe)
    seen = []
    for step in range(8):  # 4 steps an epoch, warm-up over 3
        warm_up(optimizer, scheduler.base_lrs, step, 3)
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if step % 4 == 3:
            scheduler.step()
    assert seen == pytest.approx([0.05 / 3, 0.1 / 3, 0.05, 0.05, 0.015, 0.015, 0.015, 0.015])
    assert scheduler.get_last_lr()[0] == pytest.approx(0.05 * 0.3**2)
