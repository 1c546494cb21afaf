"""Place batches (``--recipe gsv``): P places × K images a step, a pytorch-metric-learning loss on the
batch's place labels with its miner's pairs — the recipe of GSV-Cities and the models trained on it.

The sampler builds an epoch as GSV-Cities' loader does (amaralibey/gsv-cities
77ffffc23115e5ba966e108895343693ec49cbb2, dataloaders/GSVCitiesDataloader.py with ``shuffle_all=False``
and dataloaders/train/GSVCitiesDataset.py): the places of each city are shuffled, the cities follow each
other in order, P consecutive places make a batch and each gives K of its images drawn without
replacement; the images are ordered place by place. Two deviations: a last batch of fewer than P places
is left out (the official loader keeps it), so that every batch is P × K; ``--places-per-epoch`` above
the number of places makes an epoch of several such passes (the demo's equal budget).

An epoch's plan (places, image rows, each image's augmentation seed) derives from (seed, epoch) and is
saved in the checkpoint with the position in it, so ``--resume`` continues with the same batches and the
same augmented pixels. ``PlaceBatches`` is a ``Trainer``: the engine's validation, early stopping,
checkpoints and precision are the same; ``trainer_class`` puts a method's own trainer (a distillation
trainer) in front of it, so that its ``compute_loss`` adds to this one's. ``load_training_set`` reads
what a run trains on (``--train-dataset``: GSV-Cities' places; else ``--dataset``'s training split).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from pytorch_metric_learning import distances, miners
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from tqdm import tqdm

from vpr_bench.config.recipe import place_batches
from vpr_bench.datasets import Split, build_dataset
from vpr_bench.datasets.images import ImageTransform, data_transform, load_image, unwrap_worker_error
from vpr_bench.datasets.places import Places, group_split
from vpr_bench.errors import ConfigError, VPRBenchError
from vpr_bench.losses import build_loss
from vpr_bench.training.trainer import Trainer

log = logging.getLogger(__name__)
# MixVPR 4043915 dataloaders/GSVCitiesDataloader.py; BoQ 1a4965e src/dataloaders/datamodule.py
RANDAUGMENT_OPS = 3


@dataclass
class EpochPlan:
    epoch: int
    places: np.ndarray  # (B, P) place indices
    rows: np.ndarray  # (B, P, K) image rows, place-major
    seeds: np.ndarray  # (B, P, K) each image's augmentation seed

    @property
    def num_batches(self) -> int:
        return len(self.places)

    def shard(self, batch: int, rank: int = 0, world: int = 1) -> list[tuple[int, int]]:
        """This rank's images of ``batch``, as (row, seed): its places ``rank::world``, each K images."""
        rows, seeds = self.rows[batch, rank::world].ravel(), self.seeds[batch, rank::world].ravel()
        return list(zip(rows.tolist(), seeds.tolist(), strict=True))

    def state(self) -> dict:
        arrays = {
            k: torch.from_numpy(np.ascontiguousarray(getattr(self, k))) for k in ("places", "rows", "seeds")
        }
        return {"epoch": self.epoch, **arrays}

    @classmethod
    def from_state(cls, state: dict | None) -> EpochPlan | None:
        if state is None:
            return None
        return cls(state["epoch"], *(state[k].numpy() for k in ("places", "rows", "seeds")))


class PlaceSampler:
    """The epochs' P × K batches of ``places`` (see the module docstring)."""

    def __init__(self, places: Places, per_batch: int, per_place: int, per_epoch: int, seed: int):
        if places.num_places < per_batch:
            raise ConfigError(
                f"--places-per-batch {per_batch}: the training set has {places.num_places} places with ≥ "
                f"{per_place} images; give at most that"
            )
        self.places, self.per_batch, self.per_place, self.seed = places, per_batch, per_place, seed
        self.num_batches = max(1, (per_epoch or places.num_places) // per_batch)

    def epoch(self, epoch: int) -> EpochPlan:
        rng = np.random.default_rng([self.seed, epoch, 5])
        batches: list[np.ndarray] = []
        while len(batches) < self.num_batches:  # passes over the places, each shuffled within the cities
            order = np.concatenate([rng.permutation(ids) for _, ids in self.places.groups])
            batches += list(
                order[: len(order) // self.per_batch * self.per_batch].reshape(-1, self.per_batch)
            )
        places = np.stack(batches[: self.num_batches])
        members = self.places.members
        rows = np.array([rng.choice(members[p], self.per_place, replace=False) for p in places.ravel()])
        rows = rows.reshape(*places.shape, self.per_place)
        return EpochPlan(epoch, places, rows, rng.integers(0, 2**31, size=rows.shape))


def place_triplets(places: int, per_place: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Every (anchor, positive, negative) of ``places`` × ``per_place`` images in place-major order."""
    n = places * per_place
    place = torch.arange(n, device=device) // per_place
    same = place[:, None] == place[None, :]
    anchors, positives = (same & ~torch.eye(n, dtype=torch.bool, device=device)).nonzero(as_tuple=True)
    negatives = (~same).nonzero(as_tuple=True)[1].view(n, n - per_place)[anchors]  # (n(K-1), n-K)
    repeat = n - per_place
    return anchors.repeat_interleave(repeat), positives.repeat_interleave(repeat), negatives.reshape(-1)


def as_pil(image) -> Image.Image:
    """A decoded image (the image cache's uint8 array, or a PIL image) as a PIL image."""
    return Image.fromarray(image) if isinstance(image, np.ndarray) else image


def train_transform(model, cfg, device: torch.device) -> ImageTransform:
    """Training images: resized to ``--train-image-size`` (else ``--image-size``), then RandAugment(3 ops,
    ``--augment-magnitude``, bilinear) on the resized image where ``--augment randaugment`` (MixVPR's
    order; with a tensor-first preprocessing, before its resize), then the method's normalisation."""
    recipe = cfg.recipe
    data = dataclasses.replace(cfg.data, image_size=recipe.train_image_size or cfg.data.image_size)
    base = data_transform(model, data, device)
    if recipe.augment == "none":
        return base
    augment = transforms.RandAugment(
        RANDAUGMENT_OPS, recipe.augment_magnitude, interpolation=transforms.InterpolationMode.BILINEAR
    )
    steps = [as_pil, augment, *base.tensor_steps.transforms]
    return ImageTransform(base.pil_steps.transforms, steps, base.stage, base.cache)


class PlaceImages(Dataset):
    """Item (row, seed) → (the image, its row); an augmented image draws its randomness from ``seed``."""

    def __init__(self, paths, transform, augmented: bool):
        self.paths, self.transform, self.augmented = paths, transform, augmented

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int]):
        row, seed = item
        if not self.augmented:
            return load_image(self.paths[row], self.transform), row
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return load_image(self.paths[row], self.transform), row


def collate_places(items):
    images, rows = zip(*items, strict=True)
    return torch.stack(images), torch.tensor(rows)


def build_miner(name: str):
    """``--miner``: pml's MultiSimilarityMiner(epsilon=0.1, CosineSimilarity) (MixVPR utils/losses.py
    ``get_miner`` with main.py's miner_margin=0.1; BoQ src/model.py epsilon=0.1), or None (every pair)."""
    if name == "none":
        return None
    return miners.MultiSimilarityMiner(epsilon=0.1, distance=distances.CosineSimilarity())


class PlaceBatches(Trainer):
    """The engine on place batches; ``compute_loss`` is the recipe's metric loss."""

    epoch_line = (
        "epoch %d/%d: loss %.4f, %d places (%d left out: fewer than K images), val R@1 %.2f (best %.2f @%d)%s"
    )

    def __init__(self, model, cfg, train_split, val_split, device, run_dir, **kwargs):
        recipe = cfg.recipe
        places = (
            train_split
            if isinstance(train_split, Places)
            else group_split(train_split, recipe.images_per_place)
        )
        places.validate(recipe.images_per_place)
        super().__init__(model, cfg, train_split, val_split, device, run_dir, **kwargs)
        if recipe.places_per_batch < self.world:
            raise ConfigError(
                f"--places-per-batch {recipe.places_per_batch}: fewer places than the {self.world} ranks"
            )
        self.places, self.plan = places, None
        self.sampler = PlaceSampler(
            places, recipe.places_per_batch, recipe.images_per_place, recipe.places_per_epoch, cfg.seed
        )
        self.train_transform = train_transform(model, cfg, device)
        if recipe.warmup_epochs:  # BoQ's warm-up: epochs of steps
            self.warmup_steps = recipe.warmup_epochs * self.sampler.num_batches
        log.info(
            "place batches: %d places (%d images) of %s, %d × %d images a batch, %d batches an epoch",
            places.num_places, sum(len(m) for m in places.members), places.source or places.dataset,
            recipe.places_per_batch, recipe.images_per_place, self.sampler.num_batches,
        )  # fmt: skip

    # ---- the objective: pml's loss and miner on the batch's place labels ----------------------------
    def build_objective(self):
        tc = self.tc
        loss = build_loss(
            tc.loss, places=True, margin=tc.margin, distance=tc.distance, reduction=tc.reduction
        )
        return build_miner(self.cfg.recipe.miner), loss

    def compute_loss(self, embeddings, triplets, images, tuple_ids) -> torch.Tensor:
        """pml's loss over the batch's place labels and its miner's pairs (mined in the space of
        ``mining_embeddings``), as MixVPR's ``loss_function``. ``triplets``: every (anchor, positive,
        negative) of the batch, for a subclass's own terms; ``tuple_ids``: the batch's image rows."""
        labels = torch.from_numpy(self.places.labels[np.asarray(tuple_ids)]).to(self.device)
        if self.miner is None:
            return self.loss_fn(embeddings, labels)
        pairs = self.miner(self.mining_embeddings(embeddings, images, tuple_ids), labels)
        return self.loss_fn(embeddings, labels, pairs)

    def mining_embeddings(self, embeddings, images, tuple_ids) -> torch.Tensor:
        """The descriptors the miner picks the batch's pairs in: the model's own."""
        return embeddings.detach()

    def image_rows(self, tuple_ids) -> np.ndarray:
        return np.asarray(tuple_ids)

    # ---- state --------------------------------------------------------------------------------------
    def batches_state(self) -> dict:
        return {"places": None if self.plan is None else self.plan.state()}

    def load_batches_state(self, state: dict) -> None:
        self.plan = EpochPlan.from_state(state.get("places"))

    # ---- loop ---------------------------------------------------------------------------------------
    def train_epoch(self) -> None:
        """The epoch's plan (made at its start, or resumed), trained on from where it stands."""
        p = self.progress
        if self.plan is None or self.plan.epoch != p.epoch:
            self.plan, p.position = self.sampler.epoch(p.epoch), 0
            p.epoch_tuples += self.plan.places.size  # places trained on this epoch
            p.epoch_skipped += skipped_places(self.places)
        with self.phase("optimisation"):
            self._train_places()
        self.plan = None

    def _train_places(self) -> None:
        p, plan, k = self.progress, self.plan, self.cfg.recipe.images_per_place
        shards = [plan.shard(b, self.rank, self.world) for b in range(p.position, plan.num_batches)]
        images_per_batch = plan.places.shape[1] * k
        dataset = PlaceImages(self.places.paths, self.train_transform, self.cfg.recipe.augment != "none")
        loader = DataLoader(
            dataset, batch_sampler=shards, collate_fn=collate_places, num_workers=self.cfg.eval.num_workers
        )
        self.model.train()
        bar = tqdm(total=plan.num_batches, initial=p.position, desc=f"epoch {p.epoch + 1}", unit="batch",
                   disable=self.cfg.quiet, leave=False)  # fmt: skip
        try:
            for images, rows in loader:
                images = images.to(self.device)
                with self.precision.autocast():
                    embeddings = self.forward(images).float()
                triplets = place_triplets(len(rows) // k, k, self.device)
                loss = self.compute_loss(embeddings, triplets, images, rows)
                self.step(loss, len(rows) / images_per_batch, bar)
        except VPRBenchError:
            raise
        except Exception as exc:
            raise unwrap_worker_error(exc) from None
        finally:
            bar.close()


def skipped_places(places: Places) -> int:
    """Places left out for having fewer than K images (GSV-Cities' cities, or a split's candidates)."""
    if "counts" in places.info:
        return sum(c.get("places_with_fewer_images", 0) for c in places.info["counts"].values())
    return int(places.info.get("candidates_with_fewer_images", 0))


def load_training_set(cfg) -> Split | Places:
    """What a run trains on: ``--train-dataset`` (at ``--train-data-root``) if given, else ``--dataset``;
    its training split, or its places where the dataset is a set of places (GSV-Cities), checked."""
    recipe, data = cfg.recipe, cfg.data
    if recipe.train_dataset:
        data = dataclasses.replace(data, dataset=recipe.train_dataset, data_root=recipe.train_data_root)
    dataset = build_dataset(data.dataset, data)
    if not hasattr(dataset, "load_places"):
        split = dataset.split("train", data)
        split.validate()
        return split
    if not place_batches(cfg):
        raise ConfigError(
            f"{dataset.name} is a set of places, trained on with place batches: add --recipe gsv (or gsv-boq)"
        )
    places = dataset.load_places(recipe.train_cities, recipe.images_per_place)
    places.validate(recipe.images_per_place)
    return places


def trainer_class(cfg, own: type[Trainer] | None = None) -> type[Trainer]:
    """The trainer of a run: the method's own (``own``: its ``MethodSpec.trainer``, else ``Trainer``), on
    place batches where the recipe has them — a method's own trainer in front of ``PlaceBatches``."""
    own = own or Trainer
    if not place_batches(cfg):
        return own
    if own is Trainer:
        return PlaceBatches
    return type(f"Place{own.__name__}", (own, PlaceBatches), {"__doc__": f"{own.__name__} on place batches"})


def budget_of_batches(cfg, seen: int) -> dict:
    """The record's budget fields of the batches: ``seen`` tuples (triplet) or places (place batches)."""
    tc, recipe = cfg.train, cfg.recipe
    if not place_batches(cfg):
        return {
            "queries_per_epoch": tc.queries_per_epoch or "all",
            "tuples_seen": seen,
            "images_seen": seen * (2 + tc.negatives),  # query + positive + negatives per tuple
            "batch_size": tc.batch_size,
            "negatives": tc.negatives,
        }
    return {
        "places_per_batch": recipe.places_per_batch,
        "images_per_place": recipe.images_per_place,
        "places_per_epoch": recipe.places_per_epoch or "all",
        "places_seen": seen,
        "images_seen": seen * recipe.images_per_place,
        "miner": recipe.miner,
        "augment": recipe.augment
        if recipe.augment == "none"
        else f"{recipe.augment}:{recipe.augment_magnitude}",
        "train_image_size": list(recipe.train_image_size or cfg.data.image_size),
    }
