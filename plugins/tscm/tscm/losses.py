"""Distillation losses: TSCM's cross-metric loss and the alternatives for ablations.

Each is a small pytorch-metric-learning ``BaseMetricLossFunction``: the student's embeddings are
``embeddings``, the frozen teacher's embeddings of the same images are ``ref_emb``, and the batch's mined
(anchor, positive, negative) rows are ``indices_tuple``. Distances come from pml (``LpDistance`` without
its default normalisation, so the formulas below hold); reductions from pml reducers.
Registered in vpr-bench's ``kd-loss`` registry; ``build_kd_loss(name)`` returns a callable
``(student, teacher, triplets) → scalar``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances, reducers
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.utils import common_functions as c_f
from torch import nn
from torch.autograd.function import once_differentiable

from vpr_bench.api import KD_LOSSES, register_kd_loss


def squared_l2() -> distances.LpDistance:
    return distances.LpDistance(normalize_embeddings=False, p=2, power=2)


def paired_distance(distance, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Row-wise d(x_i, y_i) under a pml distance's own settings (normalisation, p, power).

    pml's ``pairwise_distance`` ignores ``power`` and adds an epsilon; this is exact and O(N·D) instead
    of the O(N²·D) full matrix.
    """
    x, y = distance.maybe_normalize(x), distance.maybe_normalize(y)
    if distance.is_inverted:  # a similarity (CosineSimilarity, DotProductSimilarity)
        values = (x * y).sum(dim=1)
        return values**distance.power if distance.power != 1 else values
    if distance.p == 2:  # squared L2 without a square root, then the power
        # mse_loss is one fused kernel each way (sub + vecdot is four full-size passes): half the time
        squared = F.mse_loss(x, y, reduction="none").sum(dim=1)
        return squared if distance.power == 2 else squared ** (distance.power / 2)
    values = torch.linalg.vector_norm(x - y, ord=distance.p, dim=1)
    return values**distance.power if distance.power != 1 else values


def _unique_pairs(anchors: torch.Tensor, positives: torch.Tensor, n: int):
    """Each (anchor, positive) pair once: the [a; p] rows of the unique pairs, their partners [p; a],
    and the pair of each triplet."""
    keys, pair_of = torch.unique(anchors * n + positives, return_inverse=True)
    ap = torch.cat([keys // n, keys % n])
    return ap, ap.roll(len(keys)), pair_of


def _combine(same, crossed, ap, pair_of, negatives, terms: str) -> torch.Tensor:
    """Per-triplet sum of the chosen terms from per-image ``same`` d(S(x), T(x)) and per-pair ``crossed``
    [d(S(a), T(p)); d(S(p), T(a))] distances."""
    if terms == "cross":
        pair_terms = crossed
    elif terms == "soft":
        pair_terms = same[ap]
    else:
        pair_terms = crossed + same[ap]
    per_pair = pair_terms.view(2, -1).sum(dim=0)[pair_of]
    return per_pair if terms == "cross" else per_pair + same[negatives]


def cross_metric_distances(distance, student, teacher, indices_tuple, terms: str = "both"):
    """Per-triplet Σ of the cross-metric terms under any pml ``distance``, through autograd.

    Each (anchor, positive) pair appears in many triplets: its cross distances are measured once. The
    same-image distances come from one row-aligned pass; only the cross pairs are gathered.
    """
    anchors, positives, negatives = indices_tuple
    ap, pa, pair_of = _unique_pairs(anchors, positives, len(student))
    same = paired_distance(distance, student, teacher)
    crossed = paired_distance(distance, student[ap], teacher[pa])
    return _combine(same, crossed, ap, pair_of, negatives, terms)


class _SquaredL2CrossMetric(torch.autograd.Function):
    """``cross_metric_distances`` for squared L2 (the loss's default) with a hand-derived backward, and
    with ``margin`` the release's squared hinge ½·max(margin + D, 0)² applied to it.

    Same values as the autograd path (a test checks values and gradients, and gradcheck in float64);
    the point is the op count, which is what this loss costs on a CPU: autograd gives every small index
    and sum its own node and every gather a zero-filled full-size gradient. Here ∂D_t/∂S_x = 2(S_x − T_y)
    for each distance d(S_x, T_y) in triplet t, so the gradient is the forward's saved differences
    weighted by the summed upstream gradients: one full-size pass plus an ``index_add_`` of the few
    gathered rows.
    """

    @staticmethod
    def forward(ctx, student, teacher, anchors, positives, negatives, terms, margin):
        ap, pa, pair_of = _unique_pairs(anchors, positives, len(student))
        aligned = student - teacher
        gathered = student.index_select(0, ap) - teacher.index_select(0, pa)
        same = torch.linalg.vector_norm(aligned, dim=1).square()
        crossed = torch.linalg.vector_norm(gathered, dim=1).square()
        total = _combine(same, crossed, ap, pair_of, negatives, terms)
        hinge = None if margin is None else F.relu(margin + total)
        ctx.save_for_backward(aligned, gathered, ap, pa, pair_of, negatives, hinge)
        ctx.terms, ctx.margin = terms, margin
        return total if margin is None else 0.5 * hinge.square()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        aligned, gathered, ap, pa, pair_of, negatives, hinge = ctx.saved_tensors
        if ctx.margin is not None:  # d/dD ½·max(margin + D, 0)² = max(margin + D, 0)
            grad = grad * hinge
        per_pair = grad.new_zeros(len(ap) // 2).index_add_(0, pair_of, grad)
        per_pair = torch.cat([per_pair, per_pair])  # per [a; p] row
        grad_same = grad.new_zeros(len(aligned))
        if ctx.terms != "cross":
            grad_same.index_add_(0, ap, per_pair).index_add_(0, negatives, grad)
        grad_crossed = per_pair if ctx.terms != "soft" else torch.zeros_like(per_pair)
        full = aligned * (2 * grad_same).unsqueeze(1)
        extra = gathered * (2 * grad_crossed).unsqueeze(1)
        grad_student = grad_teacher = None
        if ctx.needs_input_grad[1]:
            grad_teacher = -full.index_add(0, pa, extra)
        if ctx.needs_input_grad[0]:
            grad_student = full.index_add_(0, ap, extra)
        return grad_student, grad_teacher, None, None, None, None, None


def _is_squared_l2(distance) -> bool:
    return (
        type(distance) is distances.LpDistance
        and distance.p == 2
        and distance.power == 2
        and not distance.normalize_embeddings
    )


def _elements(losses: torch.Tensor, embeddings: torch.Tensor) -> dict:
    indices = c_f.torch_arange_from_size(embeddings)
    return {"loss": {"losses": losses, "indices": indices, "reduction_type": "element"}}


def _triplets(losses: torch.Tensor, indices_tuple) -> dict:
    return {"loss": {"losses": losses, "indices": indices_tuple, "reduction_type": "triplet"}}


class CrossMetricLoss(BaseMetricLossFunction):
    """TSCM cross-metric distillation (arXiv 2404.01587, Sec. III-C), per (a, p, n) triplet, d = ‖·‖².

    Paper (``form="paper"``, the default): the student's anchor is pulled to the teacher's positive
    and the student's positive to the teacher's anchor, L_cm = d(S(a), T(p)) + d(S(p), T(a)), beside the
    soft term L_soft = d(S(a), T(a)) + d(S(p), T(p)) + d(S(n), T(n)); the loss is their sum.
    Release (``form="release"``, nubot-nudt/TSCM ``CKD_loss``): the same five distances D joined through
    a squared hinge, ½·max(margin + D, 0)². ``terms`` keeps "both" (default), "cross" or "soft" — the
    variants of the release's ``find_pair.py``, natural ablation rows. Mean over triplets.
    """

    def __init__(self, form: str = "paper", terms: str = "both", margin: float = 0.1, **kwargs):
        super().__init__(distance=kwargs.pop("distance", squared_l2()), **kwargs)
        if form not in ("paper", "release") or terms not in ("both", "cross", "soft"):
            raise ValueError(f"CrossMetricLoss: form {form!r} / terms {terms!r} not supported")
        self.form, self.terms, self.margin = form, terms, margin
        self.add_to_recordable_attributes(list_of_names=["margin"], is_stat=False)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        anchors, positives, negatives = indices_tuple
        if len(anchors) == 0:
            return self.zero_losses()

        margin = self.margin if self.form == "release" else None
        if _is_squared_l2(self.distance):
            total = _SquaredL2CrossMetric.apply(embeddings, ref_emb, *indices_tuple, self.terms, margin)
        else:
            total = cross_metric_distances(self.distance, embeddings, ref_emb, indices_tuple, self.terms)
            total = total if margin is None else 0.5 * F.relu(margin + total) ** 2
        return _triplets(total, indices_tuple)

    def get_default_reducer(self):
        return reducers.MeanReducer()


class RegressionLoss(BaseMetricLossFunction):
    """FitNets-style hint regression (Romero et al., ICLR 2015; AML's "reg"): mean ‖s − t‖² per image."""

    def __init__(self, **kwargs):
        super().__init__(distance=kwargs.pop("distance", squared_l2()), **kwargs)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        return _elements(paired_distance(self.distance, embeddings, ref_emb), embeddings)


class CosineLoss(BaseMetricLossFunction):
    """Cosine distillation: mean (1 − cos(s, t)) per image."""

    def __init__(self, **kwargs):
        super().__init__(distance=kwargs.pop("distance", distances.CosineSimilarity()), **kwargs)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        return _elements(1 - paired_distance(self.distance, embeddings, ref_emb), embeddings)


class RKDLoss(BaseMetricLossFunction):
    """Relational KD (Park et al., "Relational Knowledge Distillation", CVPR 2019, eqs. 4–7).

    Distance-wise ψ_D(i, j) = ‖x_i − x_j‖ / μ (μ: mean non-zero distance of the batch) and angle-wise
    ψ_A(i, j, k) = ⟨e_ij, e_kj⟩, each matched with the Huber (smooth-L1) loss, weights 1 and 2 (the
    paper's metric-learning recipe), over all images of the batch.
    """

    def __init__(self, distance_weight: float = 1.0, angle_weight: float = 2.0, **kwargs):
        super().__init__(
            distance=kwargs.pop("distance", distances.LpDistance(normalize_embeddings=False)), **kwargs
        )
        self.distance_weight, self.angle_weight = distance_weight, angle_weight

    def _normalised_distances(self, x: torch.Tensor) -> torch.Tensor:
        d = self.distance(x)
        return d / d[d > 0].mean()

    @staticmethod
    def _angles(x: torch.Tensor) -> torch.Tensor:
        e = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), dim=2)  # e[j, i] = unit(x_i − x_j): (N, N, D)
        return torch.bmm(e, e.transpose(1, 2)).flatten()  # ⟨e_ji, e_jk⟩ for every (j, i, k)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        with torch.no_grad():
            teacher_d, teacher_a = self._normalised_distances(ref_emb), self._angles(ref_emb)
        loss_d = F.smooth_l1_loss(self._normalised_distances(embeddings), teacher_d)
        loss_a = F.smooth_l1_loss(self._angles(embeddings), teacher_a)
        loss = self.distance_weight * loss_d + self.angle_weight * loss_a
        return {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}


class PKTLoss(BaseMetricLossFunction):
    """Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018, eqs. 8–10).

    K(a, b) = ½(cos(a, b) + 1); p_{j|i} = K(x_i, x_j) / Σ_{k≠i} K(x_i, x_k); loss = Σ_i Σ_{j≠i}
    p^t_{j|i} log(p^t_{j|i} / p^s_{j|i}), averaged over the images i of the batch.
    """

    def __init__(self, eps: float = 1e-7, **kwargs):
        super().__init__(distance=kwargs.pop("distance", distances.CosineSimilarity()), **kwargs)
        self.eps = eps

    def _conditional(self, x: torch.Tensor) -> torch.Tensor:
        kernel = 0.5 * (self.distance(x) + 1)
        kernel = kernel * (1 - torch.eye(len(x), device=x.device, dtype=x.dtype))  # j ≠ i
        return kernel / kernel.sum(dim=1, keepdim=True)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        p_s, p_t = self._conditional(embeddings), self._conditional(ref_emb)
        per_image = (p_t * torch.log((p_t + self.eps) / (p_s + self.eps))).sum(dim=1)
        return _elements(per_image, embeddings)


class STUNLoss(BaseMetricLossFunction):
    """STUN's uncertainty-aware student–teacher loss (Cai et al., IROS 2022, ramdrop/stun).

    A Linear(D, D) + Sigmoid head on the student's descriptor predicts a per-dimension variance σ²
    (mapped ``min(10·x + 0.2, 1)`` as the release does for triplet teachers); the loss is
    mean_{i,d}[‖μ_s,i − μ_t,i‖₂ / σ²_{i,d} + log σ²_{i,d}] with the distance NOT squared. The head is
    trained with the student (its parameters are the loss's) and saved in the checkpoint.
    """

    def __init__(self, dim: int, **kwargs):
        super().__init__(
            distance=kwargs.pop("distance", distances.LpDistance(normalize_embeddings=False)), **kwargs
        )
        self.variance = nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid())

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        sigma_sq = torch.clamp(10 * self.variance(embeddings) + 0.2, max=1.0)  # (N, D)
        distance = paired_distance(self.distance, embeddings, ref_emb).unsqueeze(1)  # (N, 1): ‖μ_s − μ_t‖
        per_image = (distance / sigma_sq + torch.log(sigma_sq)).mean(dim=1)
        return _elements(per_image, embeddings)


class NoDistillation(nn.Module):
    """The student trained alone on its triplet loss (the ablation's lower bound)."""

    def forward(self, embeddings, indices_tuple=None, ref_emb=None) -> torch.Tensor:
        return embeddings.new_zeros(())


class KDLoss(nn.Module):
    """``(student, teacher, triplets) → scalar``: a pml loss with the teacher as reference embeddings."""

    def __init__(self, name: str, loss: nn.Module):
        super().__init__()
        self.name, self.loss = name, loss

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, triplets: tuple) -> torch.Tensor:
        return self.loss(student, indices_tuple=triplets, ref_emb=teacher.detach())


# ---- registry --------------------------------------------------------------------------------------
@register_kd_loss("cross-metric", "TSCM paper: triplet + soft + cross-metric (S(a)↔T(p), S(p)↔T(a)) terms")
def cross_metric(dim: int) -> nn.Module:
    return CrossMetricLoss("paper", "both")


@register_kd_loss("cross-metric-release", "TSCM release CKD_loss: ½(0.1 + soft + cross)² per triplet")
def cross_metric_release(dim: int) -> nn.Module:
    return CrossMetricLoss("release", "both")


@register_kd_loss("cross-only", "TSCM cross-metric term alone: d(S(a), T(p)) + d(S(p), T(a))")
def cross_only(dim: int) -> nn.Module:
    return CrossMetricLoss("paper", "cross")


@register_kd_loss("soft-only", "TSCM soft term alone: d(S(x), T(x)) over anchor, positive, negative")
def soft_only(dim: int) -> nn.Module:
    return CrossMetricLoss("paper", "soft")


@register_kd_loss("none", "no distillation: the student trained alone on its triplet loss")
def none(dim: int) -> nn.Module:
    return NoDistillation()


@register_kd_loss("mse", "descriptor regression, mean ‖s − t‖² (FitNets-style hint)")
def mse(dim: int) -> nn.Module:
    return RegressionLoss()


@register_kd_loss("cosine", "mean 1 − cos(s, t)")
def cosine(dim: int) -> nn.Module:
    return CosineLoss()


@register_kd_loss("rkd", "relational KD, distance + angle (Park et al., CVPR 2019)")
def rkd(dim: int) -> nn.Module:
    return RKDLoss()


@register_kd_loss("pkt", "probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018)")
def pkt(dim: int) -> nn.Module:
    return PKTLoss()


@register_kd_loss("stun", "STUN uncertainty-aware student–teacher loss (Cai et al., IROS 2022)")
def stun(dim: int) -> nn.Module:
    return STUNLoss(dim)


def build_kd_loss(name: str, dim: int) -> KDLoss:
    return KDLoss(name, KD_LOSSES.build(name, dim))
