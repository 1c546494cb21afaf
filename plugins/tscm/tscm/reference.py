"""The TSCM release's per-triplet distillation loss, re-implemented faithfully as a reference.

The vectorised ``CrossMetricLoss(form="release")`` is tested against this (values and gradients) and
timed against it in ``benchmarks/kd_loss.py``. It follows the release (nubot-nudt/TSCM ``trainer.py``:
``CKD_loss`` called from ``process_batch_stu``) step for step, costs included: the batch is split into
anchors, positives and negatives; for every (query i, negative n) the negative's row is found as
``sum(neg_counts[:i]) + n`` (a tensor sum and ``.item()``); the loss module gets (1, D) slices and
measures **seven** squared distances with ``torch.norm(·).pow(2)`` — ``SaTn`` and ``SnTa`` are computed
and never used, as in the release — then ½·max(margin + D, 0)²; the sum is divided by the number of
negatives. Nothing here is used for training.
"""

from __future__ import annotations

import torch
from torch import nn


def _squared(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.norm(x - y, p=2).pow(2)


class ReleaseCKD(nn.Module):
    """One triplet's term: D = SaTp + SpTa + SaTa + SpTp + SnTn, loss ½·max(margin + D, 0)²."""

    def __init__(self, margin: float = 0.1):
        super().__init__()
        self.margin = torch.tensor(margin)

    def forward(self, s_a, s_p, s_n, t_a, t_p, t_n):  # each (1, D)
        cross = _squared(s_a, t_p) + _squared(s_p, t_a)
        _squared(s_a, t_n), _squared(s_n, t_a)  # measured and discarded by the release
        soft = _squared(s_a, t_a) + _squared(s_p, t_p) + _squared(s_n, t_n)
        return 0.5 * torch.clamp(self.margin + cross + soft, min=0).pow(2)


def release_ckd_loop(
    student: torch.Tensor, teacher: torch.Tensor, neg_counts: torch.Tensor, margin: float = 0.1
) -> torch.Tensor:
    """Σ over (query, negative) of ``ReleaseCKD`` / number of negatives.

    ``student``/``teacher``: (2B + Σ neg_counts, D) rows laid out as the engine's batches — B anchors,
    B positives, then each query's negatives in turn; ``neg_counts``: (B,) negatives per query.
    """
    queries, negatives = len(neg_counts), int(neg_counts.sum())
    s_a, s_p, s_n = torch.split(student, [queries, queries, negatives])
    t_a, t_p, t_n = torch.split(teacher, [queries, queries, negatives])
    term = ReleaseCKD(margin)
    total = 0
    for i, count in enumerate(neg_counts):
        for n in range(count):
            k = (torch.sum(neg_counts[:i]) + n).item()
            q, neg = slice(i, i + 1), slice(k, k + 1)
            total += term(s_a[q], s_p[q], s_n[neg], t_a[q], t_p[q], t_n[neg])
    return total / float(negatives)
