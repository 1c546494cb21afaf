"""The training loop every method reuses: mine → train → validate → early-stop, resumable at any batch.

An epoch visits the training queries that have a non-trivial positive in a seeded order, in rounds of
``cache_refresh`` batches (one round when 0). Each round refreshes the descriptor cache, mines tuples and
trains on them. All randomness of a round derives from (seed, epoch, round), and the state saved at a
checkpoint (model, optimiser, scheduler, position, tuples, miner cache, RNG) lets ``--resume`` end at the
same metrics as an uninterrupted run on CPU. Checkpoints are written on a time basis
(``--checkpoint-every-min``), after each mining round, at each epoch's end and on Ctrl-C/SIGTERM; a
snapshot in CPU memory is taken at once and the file written in the background (``state.StateWriter``).
Methods with other objectives (distillation) subclass ``Trainer`` and override ``cache_descriptors``
and/or ``compute_loss``; place batches (``places.py``) override ``build_objective`` and ``train_epoch``.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from vpr_bench import distributed
from vpr_bench.config import RunConfig
from vpr_bench.datasets.images import data_transform, unwrap_worker_error
from vpr_bench.datasets.split import Split
from vpr_bench.datasets.workers import loader_workers
from vpr_bench.errors import VPRBenchError
from vpr_bench.evaluation.descriptors import as_array, extract
from vpr_bench.evaluation.engine import evaluate
from vpr_bench.losses import build_loss
from vpr_bench.training import early_stopping
from vpr_bench.training import state as ckpt
from vpr_bench.training.curves import TrainingCurves
from vpr_bench.training.early_stopping import Progress
from vpr_bench.training.mining import HardNegativeMiner, MinedTuples
from vpr_bench.training.optim import build_optimizer, warm_up
from vpr_bench.training.precision import Precision
from vpr_bench.training.sharded import extract_sharded
from vpr_bench.training.tuples import TupleImages, batch_rows, collate

log = logging.getLogger(__name__)


class TrainingError(VPRBenchError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


class TrainingInterrupted(VPRBenchError):
    """Ctrl-C or SIGTERM: a checkpoint was saved; ``--resume`` continues."""


class Trainer:
    clock = staticmethod(time.monotonic)  # when checkpoints are due (tests replace it)
    epoch_line = "epoch %d/%d: loss %.4f, %d tuples (%d queries skipped), val R@1 %.2f (best %.2f @%d)%s"

    def __init__(
        self,
        model: nn.Module,
        cfg: RunConfig,
        train_split: Split,
        val_split: Split,
        device: torch.device,
        run_dir: Path,
    ):
        self.model, self.cfg, self.tc = model.to(device), cfg, cfg.train
        self.train_split, self.val_split, self.device, self.run_dir = train_split, val_split, device, run_dir
        self.transform = data_transform(model, cfg.data, device)
        self.miner, self.loss_fn = self.build_objective()
        self.optimizer, self.scheduler = build_optimizer(model, self.tc, cfg.recipe)
        self.precision, self.warmup_steps = Precision(self.tc.precision, device), cfg.recipe.warmup_steps
        self.progress = Progress()
        self.curves = TrainingCurves(run_dir, self.tc, main=distributed.is_main())
        self.round_tuples: MinedTuples | None = None
        self._stop = False
        every = (self.tc.checkpoint_every_min, self.tc.checkpoint_every)
        self.checkpoints = ckpt.Checkpoints(run_dir, *every, self.clock)  # when, and the background writer
        # wall seconds of this session per phase (a nested phase's time counts once, as its own)
        self.time_split: dict[str, float] = defaultdict(float)
        self._phase: str | None = None
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.forward = model  # DistributedDataParallel under torchrun: averages gradients over ranks
        if self.world > 1:
            ids = [torch.cuda.current_device()] if device.type == "cuda" else None
            self.forward = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    # ---- overridable pieces -------------------------------------------------------------------------
    def build_objective(self) -> tuple[HardNegativeMiner, nn.Module]:
        """The miner of the batches and the loss: hard-negative mining, and the triplet loss."""
        tc = self.tc
        mining_margin = tc.mining_margin if tc.mining_margin is not None else math.sqrt(tc.margin)
        positives, exclusion = self.train_split.training_positives(), self.train_split.training_exclusion()
        miner = HardNegativeMiner(positives, exclusion, tc.negatives, tc.negative_samples, mining_margin,
                                  quiet=self.cfg.quiet, device=self.device)  # fmt: skip
        return miner, build_loss(tc.loss, margin=tc.margin, distance=tc.distance, reduction=tc.reduction)

    def cache_descriptors(self, query_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors the miner works in: (all training queries, indexed by query; database)."""
        return self.describe(self.model, query_rows, "cache")

    def describe(self, model: nn.Module, query_rows: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
        """``model``'s descriptors of the training database and of the training queries ``query_rows``
        (the other query rows stay zero), sharded over ranks under torchrun."""
        db = self.extract_sharded(model, self.train_split.database_paths, f"{label}: database")
        rows = self.extract_sharded(
            model, [self.train_split.query_paths[i] for i in query_rows], f"{label}: queries"
        )
        queries = np.zeros((self.train_split.num_queries, db.shape[1]), dtype=np.float32)
        queries[query_rows] = rows
        return queries, db

    def extract_sharded(self, model: nn.Module, paths, desc: str) -> np.ndarray:
        """Descriptors of ``paths``; under torchrun each rank extracts rows ``rank::world``."""
        return extract_sharded(model, paths, self.transform, self.cfg, self.device, desc)

    def extract_alone(self, model: nn.Module, paths, desc: str) -> np.ndarray:
        """Descriptors of ``paths`` by this process alone (what rank 0 needs after training, e.g. in
        ``report``, where a collective would wait forever for the other ranks)."""
        return as_array(extract(model, paths, self.transform, self.device, self.cfg.eval.batch_size,
                                self.cfg.eval.num_workers, desc=desc, quiet=self.cfg.quiet)[0])  # fmt: skip

    def round_workers(self, tuples: MinedTuples) -> int:
        """DataLoader workers for the images of a round's tuples: none on a CPU once they are all in the
        decoded-image cache (the cache refresh has just read them), else ``--num-workers``."""
        queries, database = batch_rows(tuples, np.arange(len(tuples.queries)))
        split = self.train_split
        paths = [split.query_paths[i] for i in np.unique(queries)]
        paths += [split.database_paths[i] for i in np.unique(database)]
        return loader_workers(self.cfg.eval.num_workers, self.transform, paths, self.device)

    def compute_loss(
        self, embeddings: torch.Tensor, triplets: tuple, images: torch.Tensor, tuple_ids: torch.Tensor
    ) -> torch.Tensor:
        """The batch's loss. ``images`` are the batch as embedded; ``tuple_ids`` its rows of the round's
        mined tuples (see ``tuples.batch_rows``), for losses that look things up per image."""
        return self.loss_fn(embeddings, indices_tuple=triplets)

    def image_rows(self, tuple_ids) -> np.ndarray:
        """The batch's images in its row order, as rows of the training images [database; queries]."""
        queries, database = batch_rows(self.round_tuples, np.asarray(tuple_ids))
        return np.concatenate([queries + self.train_split.num_database, database])

    def report(self, test_split: Split, query_descriptors: np.ndarray | None = None) -> dict:
        """Extra sections for the final result record (after the best weights are loaded);
        ``query_descriptors``: the trained model's descriptors of the test queries, just extracted by
        the test evaluation (for extra evaluations that need them)."""
        return {}

    @contextmanager
    def phase(self, name: str):
        """Count the wall time of the block as ``name`` in ``time_split`` (not in the enclosing phase)."""
        outer, self._phase = self._phase, name
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.time_split[name] += elapsed
            if outer is not None:
                self.time_split[outer] -= elapsed
            self._phase = outer

    # ---- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "precision": self.precision.state_dict(),
            "progress": asdict(self.progress),
            **self.batches_state(),
            "rng": ckpt.rng_state(),
        }

    def batches_state(self) -> dict:
        """What the epoch's batches need to resume: the round's mined tuples, the miner's negative cache."""
        tuples = None if self.round_tuples is None else self.round_tuples.state()
        return {"round_tuples": tuples, "miner": {"negative_cache": torch.from_numpy(self.miner.cache)}}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.precision.load_state_dict(state.get("precision"))
        self.progress = Progress(**state["progress"])
        self.load_batches_state(state)
        ckpt.set_rng_state(state["rng"])

    def load_batches_state(self, state: dict) -> None:
        self.round_tuples = MinedTuples.from_state(state["round_tuples"])
        self.miner.load_state_dict({"negative_cache": state["miner"]["negative_cache"].numpy()})

    def save(self) -> None:
        """Write the resumable state (``last.pt``; first ``best.safetensors`` when validation has just
        improved) from a snapshot in CPU memory taken now, in the background (``state.Checkpoints``;
        ``wait_for_writes`` waits for it). Rank 0 alone writes."""
        if distributed.is_main():
            with self.phase("checkpoints"):
                self.checkpoints.write(self.state_dict())

    def wait_for_writes(self) -> None:
        """Block until the files of the last ``save`` are on disk; a failed write (full disk) raises here."""
        with self.phase("checkpoints"):
            self.checkpoints.writer.wait()

    def _training_over(self) -> bool:
        return self.progress.epoch >= self.tc.epochs or self.progress.stopped_early

    # ---- loop ---------------------------------------------------------------------------------------
    def rounds(self, epoch: int) -> list[np.ndarray]:
        trainable = np.flatnonzero(self.miner.train_positives.counts > 0)
        order = np.random.default_rng([self.cfg.seed, epoch]).permutation(trainable)
        if self.tc.queries_per_epoch:
            order = order[: self.tc.queries_per_epoch]
        per_round = self.tc.cache_refresh * self.tc.batch_size or len(order)
        return [order[i : i + per_round] for i in range(0, len(order), per_round)]

    def fit(self) -> Progress:
        stops = (signal.SIGINT, signal.SIGTERM)
        previous = {signum: signal.signal(signum, self._request_stop) for signum in stops}
        try:
            while not self._training_over():
                self._run_epoch()
            if not self.progress.finished:  # e.g. resumed from a state an older version wrote
                self.progress.finished = True
                self.save()
            self.wait_for_writes()
        except BaseException:
            self._settle_writes()
            raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.curves.close()
        return self.progress

    def _settle_writes(self) -> None:
        """On the way out with an error: let the write in flight finish (the last good checkpoint is then
        on disk) without hiding the error by one of its own."""
        try:
            self.wait_for_writes()
        except Exception as exc:
            log.error("%s", exc)

    def _request_stop(self, signum, frame) -> None:
        self._stop = True
        log.warning("%s: saving a checkpoint after this batch", signal.Signals(signum).name)

    def train_epoch(self) -> None:
        """The epoch's optimisation: rounds of cache refresh, mining and training on the mined tuples."""
        p = self.progress
        rounds = self.rounds(p.epoch)
        while p.round < len(rounds):
            if self.round_tuples is None:
                self.model.eval()
                with self.phase("cache refresh"):
                    queries, db = self.cache_descriptors(rounds[p.round])
                rng = np.random.default_rng([self.cfg.seed, p.epoch, p.round, 1])
                with self.phase("mining"):
                    mined = (
                        self.miner.mine(queries, db, rng, rounds[p.round]) if distributed.is_main() else None
                    )
                self.round_tuples = distributed.broadcast(mined)  # rank 0 mines for everyone
                p.position = 0
                p.epoch_tuples += len(self.round_tuples.queries)
                p.epoch_skipped += self.round_tuples.skipped
                self.save()
            with self.phase("optimisation"):
                self._train_round()
            p.round, p.position, self.round_tuples = p.round + 1, 0, None

    def _run_epoch(self) -> None:
        p, started = self.progress, time.perf_counter()
        self.train_epoch()
        self.scheduler.step()
        with self.phase("validation"):
            # metrics only; under torchrun each rank extracts its share and rank 0 scores for all
            only_metrics = dict(count_flops=False, time_model=False, sharded=True)
            validation = evaluate(self.model, self.val_split, self.cfg, self.device, **only_metrics)
            metrics = distributed.broadcast(validation.metrics if validation else None)
        recall = metrics["R@1"]
        improved = early_stopping.update(p, recall, self.tc.patience)
        self.checkpoints.best_due |= improved  # written by the save at the epoch's end
        loss = p.epoch_loss / max(p.epoch_batches, 1)
        p.history.append(
            {
                "epoch": p.epoch + 1,
                "loss": loss,
                "tuples": p.epoch_tuples,
                "skipped": p.epoch_skipped,
                **{f"val_{name}": value for name, value in metrics.items()},  # R@1, R@5, …, MRR
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        log.info(
            self.epoch_line,
            p.epoch + 1,
            self.tc.epochs,
            loss,
            p.epoch_tuples,
            p.epoch_skipped,
            recall,
            p.best_recall,
            p.best_epoch,
            "" if improved else f", {p.bad_epochs} without gain",
        )
        p.epoch, p.round = p.epoch + 1, 0
        p.epoch_loss, p.epoch_batches, p.epoch_tuples, p.epoch_skipped = 0.0, 0, 0, 0
        self.curves.epoch_end(p.history)  # training.csv (and TensorBoard): the epochs saved below
        p.finished = self._training_over()
        self.save()

    def step(self, loss: torch.Tensor, share: float, bar) -> None:
        """One optimiser step on this rank's ``loss`` (its ``share`` of the batch under torchrun), after
        the warm-up's lr; stops on a non-finite loss; checkpoints when due and on Ctrl-C/SIGTERM."""
        p = self.progress
        if self.world > 1:  # every rank sees the batch's loss, so all stop together on NaN
            batch_loss = distributed.all_sum(loss.item() * share)
            loss = loss * (share * self.world)
        else:
            batch_loss = loss.item()
        if not math.isfinite(batch_loss):
            raise TrainingError(
                f"non-finite loss ({batch_loss}) at epoch {p.epoch + 1}, batch {p.position + 1} "
                f"(step {p.global_step + 1}); the last good checkpoint {self.run_dir / ckpt.LAST} "
                "is kept; try a lower --lr"
            )
        warm_up(self.optimizer, self.scheduler.base_lrs, p.global_step, self.warmup_steps)
        self.precision.step(loss, self.optimizer)
        p.position, p.global_step = p.position + 1, p.global_step + 1
        p.epoch_loss, p.epoch_batches = p.epoch_loss + batch_loss, p.epoch_batches + 1
        bar.update()
        bar.set_postfix(loss=f"{batch_loss:.4f}")
        if self._stop:
            self.save()
            self.wait_for_writes()
            raise TrainingInterrupted(
                f"interrupted at epoch {p.epoch + 1}, batch {p.position}; checkpoint saved: "
                f"continue with `vpr-bench run --resume {self.run_dir}`"
            )
        if self.checkpoints.due(p.global_step):  # --checkpoint-every-min, --checkpoint-every
            self.save()

    def _train_round(self) -> None:
        p, tuples = self.progress, self.round_tuples
        order = np.random.default_rng([self.cfg.seed, p.epoch, p.round, 2]).permutation(len(tuples.queries))
        batches = [
            order[i : i + self.tc.batch_size].tolist() for i in range(0, len(order), self.tc.batch_size)
        ]
        dataset = TupleImages(
            tuples, self.train_split.query_paths, self.train_split.database_paths, self.transform
        )
        # Under torchrun each rank takes tuples rank::world of every batch; its mean loss is weighted by
        # its share of the batch's triplets so that DDP's gradient average is the whole batch's mean.
        triplets_per_tuple = (tuples.negatives >= 0).sum(axis=1)
        shards, weights = [], []
        for batch in batches[p.position :]:
            mine = batch[self.rank :: self.world]
            share = triplets_per_tuple[mine].sum() / max(triplets_per_tuple[batch].sum(), 1) if mine else 0.0
            shards.append(mine or batch[:1])  # a rank with no tuple still takes part (weight 0)
            weights.append(float(share))
        loader = DataLoader(
            dataset,
            batch_sampler=shards,
            collate_fn=collate,
            num_workers=self.round_workers(tuples),
            pin_memory=self.device.type == "cuda",  # the batch's copy to the GPU then runs asynchronously
        )
        self.model.train()
        bar = tqdm(
            total=len(batches),
            initial=p.position,
            desc=f"epoch {p.epoch + 1}",
            unit="batch",
            disable=self.cfg.quiet,
            leave=False,
        )
        try:
            for (images, triplets, tuple_ids), share in zip(loader, weights, strict=True):
                images = images.to(self.device, non_blocking=True)
                with self.precision.autocast():  # the loss in float32 on the descriptors cast back
                    embeddings = self.forward(images).float()
                triplets = tuple(t.to(self.device) for t in triplets)
                self.step(self.compute_loss(embeddings, triplets, images, tuple_ids), share, bar)
        except VPRBenchError:
            raise
        except Exception as exc:
            raise unwrap_worker_error(exc) from None
        finally:
            bar.close()
