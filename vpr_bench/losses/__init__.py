"""Training losses, registered by name. Built on pytorch-metric-learning's distances and reducers."""

from __future__ import annotations

from pytorch_metric_learning import distances, losses, reducers

from vpr_bench.errors import ConfigError
from vpr_bench.registry import LOSSES, register_loss

DISTANCES = {
    "l2": lambda: distances.LpDistance(normalize_embeddings=False, p=2, power=1),
    "squared-l2": lambda: distances.LpDistance(normalize_embeddings=False, p=2, power=2),
    "cosine": lambda: distances.CosineSimilarity(),
}
REDUCERS = {
    "mean": reducers.MeanReducer,
    "sum": reducers.SumReducer,
    "avg-nonzero": reducers.AvgNonZeroReducer,
}


def make_distance(name: str):
    if name not in DISTANCES:
        raise ConfigError(f"distance {name!r} is not one of {', '.join(DISTANCES)}")
    return DISTANCES[name]()


def make_reducer(name: str):
    if name not in REDUCERS:
        raise ConfigError(f"reduction {name!r} is not one of {', '.join(REDUCERS)}")
    return REDUCERS[name]()


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
