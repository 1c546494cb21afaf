"""``template-cosine``: a distillation loss, mean (1 − cos(s, t)) over the images of the batch.

A distillation loss is a pytorch-metric-learning ``BaseMetricLossFunction``: the student's descriptors are
``embeddings``, the frozen teacher's descriptors of the same images ``ref_emb``, and the batch's mined
(anchor, positive, negative) rows ``indices_tuple``. The distance is pml's (injected, swappable), the
reduction a pml reducer (the default: mean). The distillation trainer (``--kd-loss NAME``) builds it with
``builder(descriptor_dim)`` and calls ``loss(student, indices_tuple=triplets, ref_emb=teacher)``.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import distances
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.utils import common_functions as c_f

from vpr_bench import api


class CosineDistillationLoss(BaseMetricLossFunction):
    """Per image i, 1 − cos(s_i, t_i): 0 when the student's descriptor points where the teacher's does."""

    def __init__(self, **kwargs):
        super().__init__(distance=kwargs.pop("distance", distances.CosineSimilarity()), **kwargs)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        student, teacher = self.distance.maybe_normalize(embeddings), self.distance.maybe_normalize(ref_emb)
        similarity = self.distance.pairwise_distance(student, teacher)  # (N,): row i against row i
        losses = 1 - similarity
        indices = c_f.torch_arange_from_size(embeddings)
        return {"loss": {"losses": losses, "indices": indices, "reduction_type": "element"}}


@api.register_kd_loss("template-cosine", "template plugin: mean 1 − cos(student, teacher)")
def template_cosine(dim: int) -> torch.nn.Module:
    return CosineDistillationLoss()
