"""Distillation losses against reference implementations and hand-computed values."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances
from tscm.losses import _SquaredL2CrossMetric, build_kd_loss
from tscm.reference import release_ckd_loop

from vpr_bench.api import KD_LOSSES


def batch(queries=8, negatives=10, dim=2048, seed=0):
    """Student/teacher embeddings laid out as the engine's batches, and their triplets."""
    g = torch.Generator().manual_seed(seed)
    n = 2 * queries + queries * negatives
    student = F.normalize(torch.randn(n, dim, generator=g), dim=1)
    teacher = F.normalize(torch.randn(n, dim, generator=g), dim=1)
    anchors = torch.arange(queries).repeat_interleave(negatives)
    triplets = (anchors, anchors + queries, torch.arange(2 * queries, n))
    return student, teacher, triplets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_release_cross_metric_equals_the_release_loop_in_value_and_gradient(seed):
    student, teacher, triplets = batch(seed=seed)
    vectorised_student = student.clone().requires_grad_(True)
    vectorised = build_kd_loss("cross-metric-release", 2048)(vectorised_student, teacher, triplets)
    vectorised.backward()
    loop_student = student.clone().requires_grad_(True)
    loop = release_ckd_loop(loop_student, teacher, torch.full((8,), 10))
    loop.backward()
    assert vectorised.item() == pytest.approx(loop.item(), rel=1e-5)
    torch.testing.assert_close(vectorised_student.grad, loop_student.grad, rtol=1e-5, atol=1e-7)


def test_release_loop_with_uneven_negative_counts():
    # query 0 has 1 negative, query 1 has 2: rows a0 a1 p0 p1 n00 n10 n11
    student, teacher, _ = batch(queries=2, negatives=1, dim=8)
    student, teacher = torch.cat([student, student[-1:]]), torch.cat([teacher, teacher[-1:]])
    triplets = (torch.tensor([0, 1, 1]), torch.tensor([2, 3, 3]), torch.tensor([4, 5, 6]))
    assert build_kd_loss("cross-metric-release", 8)(student, teacher, triplets).item() == pytest.approx(
        release_ckd_loop(student, teacher, torch.tensor([1, 2])).item(), rel=1e-6
    )


def test_paper_cross_metric_by_hand_on_2d_embeddings():
    # rows: anchor, positive, negative
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0]])
    triplets = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    # cross: ‖Sa−Tp‖² + ‖Sp−Ta‖² = 0 + 0; soft: ‖Sa−Ta‖² + ‖Sp−Tp‖² + ‖Sn−Tn‖² = 2 + 2 + 2
    assert build_kd_loss("cross-metric", 2)(student, teacher, triplets).item() == pytest.approx(6.0)
    assert build_kd_loss("cross-only", 2)(student, teacher, triplets).item() == pytest.approx(0.0)
    assert build_kd_loss("soft-only", 2)(student, teacher, triplets).item() == pytest.approx(6.0)
    assert build_kd_loss("cross-metric-release", 2)(student, teacher, triplets).item() == pytest.approx(
        0.5 * 6.1**2
    )
    assert release_ckd_loop(student, teacher, torch.tensor([1])).item() == pytest.approx(0.5 * 6.1**2)


def test_cross_metric_gradient_reaches_the_student_only():
    student, teacher, triplets = batch(queries=2, negatives=3, dim=16)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    build_kd_loss("cross-metric", 16)(student, teacher, triplets).backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None


def irregular_triplets(n=12, count=30, seed=0):
    """Random triplets: repeated and unsorted (anchor, positive) pairs, rows in several roles."""
    g = torch.Generator().manual_seed(seed)
    anchors = torch.randint(0, n, (count,), generator=g)
    positives = (anchors + torch.randint(1, 3, (count,), generator=g)) % n
    return anchors, positives, torch.randint(0, n, (count,), generator=g)


@pytest.mark.parametrize("terms", ["both", "cross", "soft"])
@pytest.mark.parametrize("margin", [None, 0.1])
def test_fused_cross_metric_gradients_pass_gradcheck(terms, margin):
    g = torch.Generator().manual_seed(1)
    student = torch.randn(12, 5, dtype=torch.float64, generator=g, requires_grad=True)
    teacher = torch.randn(12, 5, dtype=torch.float64, generator=g, requires_grad=True)
    fused = lambda s, t: _SquaredL2CrossMetric.apply(s, t, *irregular_triplets(), terms, margin)  # noqa: E731
    assert torch.autograd.gradcheck(fused, (student, teacher))


@pytest.mark.parametrize("name", ["cross-metric", "cross-metric-release", "cross-only", "soft-only"])
def test_fused_cross_metric_equals_the_autograd_path(name):
    """The default squared-L2 distance takes the fused op; any other pml distance the autograd path.
    A subclass of pml's LpDistance with the same settings forces the autograd path."""

    class SameDistance(distances.LpDistance):
        pass

    fused = build_kd_loss(name, 8)
    plain = build_kd_loss(name, 8)
    plain.loss.distance = SameDistance(normalize_embeddings=False, p=2, power=2)
    g = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(12, 8, generator=g), torch.randn(12, 8, generator=g)
    values, grads = [], []
    for loss in (fused, plain):
        x = student.clone().requires_grad_(True)
        value = loss(x, teacher, irregular_triplets())
        value.backward()
        values.append(value.item())
        grads.append(x.grad)
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    torch.testing.assert_close(grads[0], grads[1])


def test_regression_and_cosine_by_hand():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    assert build_kd_loss("mse", 2)(s, t, None).item() == pytest.approx(1.0)  # (1 + 1) / 2
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert build_kd_loss("cosine", 2)(s, t, None).item() == pytest.approx(0.5)  # (0 + 1) / 2


def rkd_reference(s, t):
    """RKD with explicit loops over pairs and triples (Park et al. 2019, eqs. 4–7; Huber δ = 1)."""
    n = len(s)

    def psi_d(x):
        d = np.array([[np.linalg.norm(x[i] - x[j]) for j in range(n)] for i in range(n)])
        return d / d[d > 0].mean()

    def psi_a(x):
        out = []
        for j in range(n):
            for i in range(n):
                for k in range(n):
                    e_ij, e_kj = x[i] - x[j], x[k] - x[j]
                    ni, nk = np.linalg.norm(e_ij), np.linalg.norm(e_kj)
                    out.append(0.0 if ni == 0 or nk == 0 else e_ij @ e_kj / (ni * nk))
        return np.array(out)

    def huber(a, b):
        diff = np.abs(a - b)
        return np.mean(np.where(diff < 1, 0.5 * diff**2, diff - 0.5))

    return huber(psi_d(s), psi_d(t)) + 2 * huber(psi_a(s), psi_a(t))


def test_rkd_matches_a_loop_reference_and_ignores_scale():
    s = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    t = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 3.0]])
    got = build_kd_loss("rkd", 2)(torch.tensor(s), torch.tensor(t), None).item()
    assert got == pytest.approx(rkd_reference(s, t), rel=1e-6)
    assert build_kd_loss("rkd", 2)(torch.tensor(3 * t), torch.tensor(t), None).item() == pytest.approx(0.0)


def test_pkt_matches_a_loop_reference():
    s = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    t = np.array([[1.0, 0.0], [0.0, 1.0], [-0.6, 0.8]])

    def conditional(x):
        k = np.array([[0.5 * (a @ b / np.linalg.norm(a) / np.linalg.norm(b) + 1) for b in x] for a in x])
        np.fill_diagonal(k, 0)
        return k / k.sum(axis=1, keepdims=True)

    ps, pt = conditional(s), conditional(t)
    expected = np.mean(
        [sum(pt[i, j] * math.log(pt[i, j] / ps[i, j]) for j in range(3) if j != i) for i in range(3)]
    )
    got = build_kd_loss("pkt", 2)(torch.tensor(s), torch.tensor(t), None).item()
    assert got == pytest.approx(expected, rel=1e-4)


def test_stun_by_hand_with_a_fixed_variance_head():
    loss = build_kd_loss("stun", 2)
    head = loss.loss.variance[0]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-5.0)
    s, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    sigma_sq = 10 / (1 + math.exp(5)) + 0.2  # min(10·sigmoid(−5) + 0.2, 1)
    assert loss(s, t, None).item() == pytest.approx(1 / sigma_sq + math.log(sigma_sq), rel=1e-6)
    assert sum(p.numel() for p in loss.parameters()) == 2 * 2 + 2  # the head trains with the student


def test_none_is_zero_and_every_registered_loss_builds():
    student, teacher, triplets = batch(queries=2, negatives=2, dim=8)
    assert build_kd_loss("none", 8)(student, teacher, triplets).item() == 0.0
    for entry in KD_LOSSES.entries():
        value = build_kd_loss(entry.name, 8)(student, teacher, triplets)
        assert value.dim() == 0 and torch.isfinite(value), entry.name
