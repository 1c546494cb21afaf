"""Training losses, registered by name. Built on pytorch-metric-learning's distances and reducers.

A loss for mined tuples (``--recipe triplet``) takes the triplet settings (margin, distance, reduction)
and is called with (anchor, positive, negative) indices; every loss can train on place batches
(``--recipe gsv``), where it is called with the batch's place labels and its miner's pairs. The place
losses are pml's, with the values of the GSV-Cities family's ``utils/losses.py`` (amaralibey/MixVPR
4043915cef24818003ece1a8112bc8a24e69abe0, the same in gsv-cities 77ffffc and salad e593005).
"""

from __future__ import annotations

import inspect

from pytorch_metric_learning import distances, losses, reducers

from vpr_bench.errors import ConfigError
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


@register_loss(
    "multi-similarity",
    "Multi-Similarity loss (Wang et al., CVPR 2019), α 1, β 50, base 0, on place batches (GSV-Cities')",
)
def multi_similarity(alpha: float = 1.0, beta: float = 50.0, base: float = 0.0) -> losses.MultiSimilarityLoss:
    """MixVPR utils/losses.py: ``MultiSimilarityLoss(alpha=1.0, beta=50, base=0.0,
    distance=DotProductSimilarity())`` (pml normalises the embeddings: cosine similarity); BoQ src/model.py
    (1a4965e): the same values with pml's default distance, CosineSimilarity — one computation."""
    return losses.MultiSimilarityLoss(
        alpha=alpha, beta=beta, base=base, distance=distances.DotProductSimilarity()
    )


@register_loss(
    "contrastive", "contrastive loss, positive margin 0, negative margin 1 (pml), on place batches"
)
def contrastive() -> losses.ContrastiveLoss:
    return losses.ContrastiveLoss(pos_margin=0, neg_margin=1)  # MixVPR utils/losses.py


@register_loss("supcon", "supervised contrastive loss, temperature 0.07 (pml), on place batches")
def supcon() -> losses.SupConLoss:
    return losses.SupConLoss(temperature=0.07)  # MixVPR utils/losses.py


@register_loss("circle", "Circle loss, m 0.4, γ 80 (pml), on place batches")
def circle() -> losses.CircleLoss:
    return losses.CircleLoss(m=0.4, gamma=80)  # MixVPR utils/losses.py ("params for image retrieval")


def takes_mined_tuples(name: str) -> bool:
    """Whether loss ``name`` trains on mined (anchor, positive, negative) tuples: its builder takes the
    triplet settings."""
    return "margin" in inspect.signature(LOSSES.get(name).builder).parameters


def build_loss(name: str, places: bool = False, **settings):
    """Loss ``name`` built with those of ``settings`` (margin, distance, reduction) its builder takes; for
    mined tuples (``places`` False) only a loss that takes them."""
    if not places and not takes_mined_tuples(name):
        raise ConfigError(
            f"--loss {name} trains on place batches (labels and a miner's pairs), not on mined tuples: "
            "add --recipe gsv, or use --loss triplet"
        )
    accepted = inspect.signature(LOSSES.get(name).builder).parameters
    return LOSSES.build(name, **{k: v for k, v in settings.items() if k in accepted})
