"""TSCM cross-metric distillation loss: vectorised (pytorch-metric-learning) vs the release's triplet loop.

The release's ``CKD_loss`` (nubot-nudt/TSCM ``trainer.py``) walks the batch one (anchor, negative) triplet
at a time in Python; ``tscm.reference.release_ckd_loop`` re-implements that path faithfully (its index
arithmetic and the seven distances it measures per triplet, two of them unused). The plugin's
``CrossMetricLoss`` measures each image's and each (anchor, positive) pair's distances once and indexes
them. All get the same random L2-normalised descriptors laid out as a training batch (8 queries × 10
negatives at 2048-d, the paper's setting); the script prints the values, their difference, the
forward+backward time of each and the ratios (target ≥ 50× against the release's loop). A lean loop —
the five distances that count, no bookkeeping — is timed too, to show how much of the ratio is the
release's overhead rather than vectorisation.

    python benchmarks/kd_loss.py [--queries 8] [--negatives 10] [--dim 2048] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from tscm.losses import build_kd_loss
from tscm.reference import release_ckd_loop


def lean_loop(student, teacher, queries: int, negatives: int, margin: float = 0.1):
    """Per-triplet loop with only the five distances of the loss and direct row arithmetic."""
    total = 0.0
    for i in range(queries):
        sa, sp, ta, tp = student[i], student[queries + i], teacher[i], teacher[queries + i]
        for j in range(negatives):
            k = 2 * queries + i * negatives + j
            sn, tn = student[k], teacher[k]
            d = (
                torch.sum((sa - tp) ** 2)
                + torch.sum((sp - ta) ** 2)
                + torch.sum((sa - ta) ** 2)
                + torch.sum((sp - tp) ** 2)
                + torch.sum((sn - tn) ** 2)
            )
            total = total + 0.5 * torch.clamp(margin + d, min=0) ** 2
    return total / (queries * negatives)


def timed(fn, student, repeats: int) -> tuple[float, float]:
    """Median ms of forward + backward over ``repeats`` runs after a warm-up, and the value."""
    times, value = [], None
    for r in range(repeats + 2):
        student.grad = None
        start = time.perf_counter()
        loss = fn()
        loss.backward()
        if r >= 2:
            times.append((time.perf_counter() - start) * 1e3)
        value = loss.item()
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--negatives", type=int, default=10)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    n = 2 * args.queries + args.queries * args.negatives
    student = F.normalize(torch.randn(n, args.dim), dim=1).requires_grad_(True)
    teacher = F.normalize(torch.randn(n, args.dim), dim=1)
    anchors = torch.arange(args.queries).repeat_interleave(args.negatives)
    triplets = (anchors, anchors + args.queries, torch.arange(2 * args.queries, n))
    loss = build_kd_loss("cross-metric-release", args.dim)
    neg_counts = torch.full((args.queries,), args.negatives)

    release_ms, release_value = timed(
        lambda: release_ckd_loop(student, teacher, neg_counts), student, args.repeats
    )
    lean_ms, lean_value = timed(
        lambda: lean_loop(student, teacher, args.queries, args.negatives), student, args.repeats
    )
    vec_ms, vec_value = timed(lambda: loss(student, teacher, triplets), student, args.repeats)
    print(
        f"batch: {args.queries} queries × {args.negatives} negatives = {len(anchors)} triplets, "
        f"{args.dim}-d, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"release per-triplet loop : {release_ms:8.3f} ms  (value {release_value:.6f})")
    print(f"lean per-triplet loop    : {lean_ms:8.3f} ms  (value {lean_value:.6f})")
    print(f"vectorised (pml)         : {vec_ms:8.3f} ms  (value {vec_value:.6f})")
    print(f"|difference| vs release  : {abs(release_value - vec_value):.2e}")
    print(f"speed-up vs release loop : {release_ms / vec_ms:.1f}x  (target >= 50x)")
    print(f"speed-up vs lean loop    : {lean_ms / vec_ms:.1f}x")


if __name__ == "__main__":
    main()
