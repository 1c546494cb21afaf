import pytest
import torch

from vpr_bench.losses import build_loss


def reference_triplet(emb, triplets, margin):
    total = 0.0
    for a, p, n in zip(*triplets, strict=True):
        d_ap = torch.linalg.vector_norm(emb[a] - emb[p])
        d_an = torch.linalg.vector_norm(emb[a] - emb[n])
        total += torch.clamp(d_ap - d_an + margin, min=0)
    return total / len(triplets[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_triplet_equals_per_triplet_loop(seed):
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(40, 16, generator=g), dim=1)
    anchors = torch.arange(4).repeat_interleave(8)
    triplets = (anchors, anchors + 4, torch.arange(8, 40))
    loss = build_loss("triplet", margin=0.1, distance="l2", reduction="mean")(emb, indices_tuple=triplets)
    assert loss.item() == pytest.approx(reference_triplet(emb, triplets, 0.1).item(), abs=1e-6)
    summed = build_loss("triplet", margin=0.1, reduction="sum")(emb, indices_tuple=triplets)
    assert summed.item() == pytest.approx(32 * loss.item(), rel=1e-5)
