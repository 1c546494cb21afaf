"""Images of mined tuples, batched so one forward pass embeds every image of the batch."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from vpr_bench.datasets.images import load_image


class TupleImages(Dataset):
    """Item t → (query image, positive image, (k, 3, H, W) valid negatives)."""

    def __init__(self, tuples, query_paths, database_paths, transform):
        self.q, self.p, self.n = tuples.queries, tuples.positives, tuples.negatives
        self.query_paths, self.database_paths, self.transform = query_paths, database_paths, transform

    def __len__(self) -> int:
        return len(self.q)

    def __getitem__(self, t: int):
        load = lambda path: load_image(path, self.transform)  # noqa: E731  (through the image cache)
        negatives = [load(self.database_paths[i]) for i in self.n[t] if i >= 0]
        return (
            load(self.query_paths[self.q[t]]),
            load(self.database_paths[self.p[t]]),
            torch.stack(negatives),
            t,
        )


def collate(items):
    """Images ordered [queries (T), positives (T), negatives (sum k_t)] and the (a, p, n) index triplets."""
    queries, positives, negatives, ids = zip(*items, strict=True)
    t = len(queries)
    counts = np.array([len(n) for n in negatives])
    anchors = np.repeat(np.arange(t), counts)
    images = torch.cat([torch.stack(queries), torch.stack(positives), *negatives])
    triplets = (
        torch.from_numpy(anchors),
        torch.from_numpy(anchors + t),
        torch.arange(2 * t, 2 * t + counts.sum()),
    )
    return images, triplets, torch.tensor(ids)


def batch_rows(tuples, tuple_ids) -> tuple[np.ndarray, np.ndarray]:
    """Which training images a collated batch holds, in its row order: (query rows, database rows).

    The batch is [queries (T), positives (T), valid negatives]; the first T rows are the returned query
    indices, the rest the returned database indices (so ``cat([q_desc[q], db_desc[d]])`` lines up).
    """
    ids = np.asarray(tuple_ids)
    negatives = tuples.negatives[ids]
    return tuples.queries[ids], np.concatenate([tuples.positives[ids], negatives[negatives >= 0]])
