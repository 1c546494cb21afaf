"""Batches of mined tuples: collate's row order and triplets, and batch_rows naming the same rows."""

import numpy as np
import torch

from vpr_bench.testing import write_image
from vpr_bench.training.mining import MinedTuples
from vpr_bench.training.tuples import TupleImages, batch_rows, collate


def constant(value: float, count: int | None = None) -> torch.Tensor:
    """A (3, 4, 4) image filled with ``value``, or ``count`` of them stacked."""
    image = torch.full((3, 4, 4), float(value))
    return image if count is None else image.expand(count, 3, 4, 4).clone()


def item(t: int, negatives: int, tuple_id: int):
    """Query 100 + t, positive 200 + t, negatives 300 + 10 t + j: every image tells where it came from."""
    stacked = torch.stack([constant(300 + 10 * t + j) for j in range(negatives)])
    return constant(100 + t), constant(200 + t), stacked, tuple_id


def labels(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].round().long().tolist()


def test_collate_orders_queries_positives_then_each_tuples_negatives():
    # three tuples with 2, 1 and 3 valid negatives; tuple ids in batch order, not sorted
    images, triplets, ids = collate([item(0, 2, 7), item(1, 1, 2), item(2, 3, 5)])
    assert images.shape == (3 + 3 + 6, 3, 4, 4)
    assert labels(images) == [100, 101, 102, 200, 201, 202, 300, 301, 310, 320, 321, 322]
    anchors, positives, negatives = triplets
    assert anchors.tolist() == [0, 0, 1, 2, 2, 2]
    assert positives.tolist() == [3, 3, 4, 5, 5, 5]
    assert negatives.tolist() == [6, 7, 8, 9, 10, 11]
    assert all(t.dtype == torch.int64 for t in triplets)  # pml indexes with them
    assert ids.tolist() == [7, 2, 5]


def test_every_triplet_is_a_query_its_positive_and_one_of_its_own_negatives():
    counts = [1, 3, 2, 2]
    images, (a, p, n), _ = collate([item(t, k, t) for t, k in enumerate(counts)])
    found = [tuple(labels(images[rows])) for rows in (a, p, n)]
    expected = [(100 + t, 200 + t, 300 + 10 * t + j) for t, k in enumerate(counts) for j in range(k)]
    assert list(zip(*found, strict=True)) == expected


def test_a_batch_of_one_tuple_with_one_negative_is_one_triplet():
    images, triplets, ids = collate([item(0, 1, 4)])
    assert labels(images) == [100, 200, 300]
    assert [t.tolist() for t in triplets] == [[0], [1], [2]]
    assert ids.tolist() == [4]


def grey_levels(tmp_path, part: str, count: int, offset: int) -> list:
    """``count`` 8×8 images of one grey level each (``offset`` + 10 i) under tmp_path/part."""
    paths = [tmp_path / part / f"{i}.png" for i in range(count)]
    for i, path in enumerate(paths):
        write_image(path, colour=(offset + 10 * i,) * 3, size=(8, 8))
    return paths


def to_tensor(image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float()  # (3, H, W), 0–255


def test_batch_rows_name_the_images_of_a_collated_batch_in_their_order(tmp_path):
    query_paths = grey_levels(tmp_path, "queries", 4, 5)  # grey 5, 15, 25, 35
    database_paths = grey_levels(tmp_path, "database", 8, 100)  # grey 100, 110, ... 170
    tuples = MinedTuples(
        queries=np.array([3, 0, 2, 1]),
        positives=np.array([1, 0, 7, 4]),
        negatives=np.array([[5, 6, 2], [3, -1, -1], [0, 4, -1], [6, 2, 3]]),  # -1: fewer negatives
        skipped=0,
        without_positive=0,
    )
    dataset = TupleImages(tuples, query_paths, database_paths, to_tensor)
    assert len(dataset) == 4 and dataset[1][2].shape == (1, 3, 8, 8)  # tuple 1: only its valid negative

    tuple_ids = [2, 0, 1]
    images, (a, p, n), ids = collate([dataset[t] for t in tuple_ids])
    query_rows, db_rows = batch_rows(tuples, ids.numpy())
    assert query_rows.tolist() == [2, 3, 0]
    assert db_rows.tolist() == [7, 1, 0, 0, 4, 5, 6, 2, 3]  # positives, then each tuple's valid negatives
    grey = images[:, 0, 0, 0].round().long()
    expected = [5 + 10 * q for q in query_rows] + [100 + 10 * d for d in db_rows]
    assert grey.tolist() == expected
    # and the triplets pair each query with its own positive and negatives
    assert (grey[p] - 100).div(10).long().tolist() == tuples.positives[ids.numpy()].repeat([2, 3, 1]).tolist()
    assert (grey[n] - 100).div(10).long().tolist() == [0, 4, 5, 6, 2, 3]
    assert a.tolist() == [0, 0, 1, 1, 1, 2]
