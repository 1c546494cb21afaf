"""Training losses, registered by name. Built on pytorch-metric-learning's distances and reducers."""

from __future__ import annotations

from pytorch_metric_learning import distances, losses, reducers

from vpr_bench.registry import (
    DISTANCES,
    LOSSES,
    REDUCTIONS,
    register_distance,
    register_loss,
    register_reduction,
)

# The names here are the allowed values of --distance and --reduction (``TrainConfig``); nowhere else.
register_distance("l2", "Euclidean distance ‖a − b‖")(
    lambda: distances.LpDistance(normalize_embeddings=False, p=2, power=1)
)
register_distance("squared-l2", "squared Euclidean distance ‖a − b‖²")(
    lambda: distances.LpDistance(normalize_embeddings=False, p=2, power=2)
)
register_distance("cosine", "cosine similarity (higher is closer)")(distances.CosineSimilarity)
register_reduction("mean", "mean over the batch's losses")(reducers.MeanReducer)
register_reduction("sum", "sum of the batch's losses")(reducers.SumReducer)
register_reduction("avg-nonzero", "mean over the non-zero losses")(reducers.AvgNonZeroReducer)


def make_distance(name: str):
    return DISTANCES.build(name)


def make_reducer(name: str):
    return REDUCTIONS.build(name)


@register_loss(
    "triplet", "triplet margin loss over (anchor, positive, negative) tuples (pytorch-metric-learning)"
)
def triplet(margin: float = 0.1, distance: str = "l2", reduction: str = "sum") -> losses.TripletMarginLoss:
    """NetVLAD/STUN/TSCM teacher loss: max(d(a, p) − d(a, n) + margin, 0) with unsquared L2 by default."""
    return losses.TripletMarginLoss(
        margin=margin, distance=make_distance(distance), reducer=make_reducer(reduction)
    )


def build_loss(name: str, **kwargs):
    return LOSSES.build(name, **kwargs)
