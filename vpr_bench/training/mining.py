"""Partial hard-negative mining (NetVLAD; pytorch-NetVlad, STUN and the TSCM release follow it).

For each training query, from descriptors cached for the whole training set:
- positive: the nearest (in descriptor space) database image among its non-trivial positives (≤ 10 m);
- negatives: ``negative_samples`` distinct database images drawn uniformly from those beyond the
  negative radius (25 m: the release's ``potential_negatives``), plus the query's previous hard negatives;
  among their ``10 × negatives`` nearest, keep the ``negatives`` nearest that violate
  ``d_neg < d_pos + mining_margin``; a query with no violating negative is skipped.

The training radii (10 m non-trivial positives, 25 m negative exclusion) are the split's own and do not
follow the evaluation radius (``--pos-radius``): evaluating with the release's 10 m protocol leaves the
training negatives beyond 25 m.

Distances are Euclidean (not squared), as in the original. Everything is computed per block of queries
from one pairwise-distance GEMM (torch, ``evaluation.exact``) against the whole database cache: no
per-query file reads, no Python loop over queries. The GEMMs run on the model's device (the trainer's):
the database cache goes there once per round, each block's distances come back for the selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.evaluation.exact import float32_tensor, squared_distances


@dataclass
class MinedTuples:
    queries: np.ndarray  # (T,) query indices that have a violating negative
    positives: np.ndarray  # (T,) database index of each query's positive
    negatives: np.ndarray  # (T, n_neg) database indices, -1 where fewer negatives violate
    skipped: int  # queries without any violating negative this round
    without_positive: int  # queries without a non-trivial positive (never trainable)

    def state(self) -> dict:
        """As a checkpoint holds it (tensors: ``weights_only`` loading reads no numpy arrays)."""
        arrays = {k: torch.from_numpy(getattr(self, k)) for k in ("queries", "positives", "negatives")}
        return {**arrays, "skipped": self.skipped, "without_positive": self.without_positive}

    @classmethod
    def from_state(cls, state: dict | None) -> MinedTuples | None:
        if state is None:
            return None
        arrays = (state[k].numpy() for k in ("queries", "positives", "negatives"))
        return cls(*arrays, state["skipped"], state["without_positive"])


def _row_mask(gt: GroundTruth, rows: np.ndarray) -> np.ndarray:
    """(len(rows), num_database) bool: database images listed for each query in ``rows``."""
    mask = np.zeros((len(rows), gt.num_database), dtype=bool)
    counts = gt.counts[rows]
    starts = gt.indptr[rows]
    r = np.repeat(np.arange(len(rows)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    mask[r, gt.indices[np.repeat(starts, counts) + offsets]] = True
    return mask


class HardNegativeMiner:
    def __init__(
        self,
        train_positives: GroundTruth,
        never_negative: GroundTruth,
        negatives: int = 10,
        negative_samples: int = 1000,
        mining_margin: float = 0.1**0.5,
        block: int = 512,
        quiet: bool = True,
        device: torch.device | str = "cpu",
    ):
        self.train_positives = train_positives  # non-trivial positives (10 m)
        self.never_negative = never_negative  # everything within the negative radius (25 m)
        self.negatives = negatives
        self.negative_samples = negative_samples
        self.mining_margin = mining_margin
        self.block = block
        self.quiet = quiet
        self.device = torch.device(device)  # where the distance blocks are computed
        # previous hard negatives of each query (-1: none yet); part of the checkpointed state
        self.cache = np.full((train_positives.num_queries, negatives), -1, dtype=np.int64)

    def state_dict(self) -> dict:
        return {"negative_cache": self.cache.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.cache = np.asarray(state["negative_cache"], dtype=np.int64).copy()

    def mine(
        self,
        query_desc: np.ndarray,
        db_desc: np.ndarray,
        rng: np.random.Generator,
        rows: np.ndarray | None = None,
    ) -> MinedTuples:
        """Tuples for the queries ``rows`` (default: all); ``query_desc`` is indexed by query index."""
        all_rows = np.arange(self.train_positives.num_queries) if rows is None else np.asarray(rows)
        has_positive = self.train_positives.counts > 0
        out_q, out_p, out_n = [], [], []
        skipped = 0
        database = float32_tensor(db_desc, self.device)  # (N, D), on the device once per call
        starts = range(0, len(all_rows), self.block)
        for start in tqdm(starts, desc="mining", unit="block", disable=self.quiet, leave=False):
            rows = all_rows[start : start + self.block]
            rows = rows[has_positive[rows]]
            if not len(rows):
                continue
            near = _row_mask(self.never_negative, rows)
            block_samples = draw_negatives(~near, self.negative_samples, rng)
            q = np.ascontiguousarray(query_desc[rows], dtype=np.float32)
            dist = np.sqrt(squared_distances(q, database))  # (B, N)
            positive_mask = _row_mask(self.train_positives, rows)
            pos = np.where(positive_mask, dist, np.inf).argmin(axis=1)
            d_pos = dist[np.arange(len(rows)), pos]
            candidates = np.concatenate([block_samples, self.cache[rows]], axis=1)  # (B, S + n_neg)
            valid = candidates >= 0
            safe = np.where(valid, candidates, 0)
            valid &= ~np.take_along_axis(near, safe, axis=1)
            # drop repeated candidates (an old hard negative may be drawn again)
            by_index = np.sort(np.where(valid, safe, -1), axis=1)
            repeated = np.zeros_like(valid)
            repeated[:, 1:] = (by_index[:, 1:] == by_index[:, :-1]) & (by_index[:, 1:] >= 0)
            unique_sorted = np.where(repeated | (by_index < 0), -1, by_index)
            d_cand = np.where(
                unique_sorted >= 0, np.take_along_axis(dist, np.maximum(unique_sorted, 0), axis=1), np.inf
            )
            order = np.argsort(d_cand, axis=1, kind="stable")[:, : 10 * self.negatives]
            nearest = np.take_along_axis(unique_sorted, order, axis=1)
            d_nearest = np.take_along_axis(d_cand, order, axis=1)
            violating = (d_nearest < (d_pos + self.mining_margin)[:, None]) & (nearest >= 0)
            first = np.argsort(~violating, axis=1, kind="stable")[:, : self.negatives]
            chosen = np.where(
                np.take_along_axis(violating, first, axis=1), np.take_along_axis(nearest, first, 1), -1
            )
            keep = violating.any(axis=1)
            skipped += int((~keep).sum())
            self.cache[rows[keep]] = chosen[keep]
            out_q.append(rows[keep])
            out_p.append(pos[keep])
            out_n.append(chosen[keep])
        return MinedTuples(
            _concat(out_q, (0,)),
            _concat(out_p, (0,)),
            _concat(out_n, (0, self.negatives)),
            skipped,
            int((~has_positive[all_rows]).sum()),
        )


def draw_negatives(allowed: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, samples) distinct column indices drawn uniformly from each row's ``allowed`` (B, N) columns;
    -1 where a row allows fewer. The ``samples`` smallest of i.i.d. random keys pick a uniform subset."""
    rows, columns = allowed.shape
    take = min(samples, columns)
    keys = rng.random((rows, columns), dtype=np.float32)
    keys[~allowed] = 2.0  # never among the smallest while an allowed column is left
    picked = (
        np.argpartition(keys, take - 1, axis=1)[:, :take]
        if take < columns
        else np.tile(np.arange(columns), (rows, 1))
    )
    picked = np.where(np.take_along_axis(allowed, picked, axis=1), picked, -1)
    if take < samples:
        picked = np.concatenate([picked, np.full((rows, samples - take), -1)], axis=1)
    return picked.astype(np.int64)


def _concat(parts: list[np.ndarray], empty_shape: tuple) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(empty_shape, dtype=np.int64)
