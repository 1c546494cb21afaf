"""The method contract: what ``register_method`` takes, what a built model is, and the one optional
capability a model may have (being fitted to data), as a documented ``Protocol``.

A method is one small file: a typed options dataclass (``vpr_bench.options``), a builder
``builder(cfg: ModelConfig, options) -> nn.Module``, registered with::

    @register_method("name", "one line", options=MyOptions, descriptor_dim=True,
                     presets={"demo": {...}, "paper": {...}}, trainer=None, checkpoint_reader=None)

- ``options``: the dataclass ``--model-option KEY=VALUE`` fills (unknown keys fail, naming the valid ones);
- ``descriptor_dim``: whether ``--descriptor-dim`` is honoured (False: refused, ``descriptor_dim_hint``
  says what to use instead);
- ``presets``: the method's own values for each preset, applied over the preset's;
- ``trainer``: a ``Trainer`` subclass that trains it (default: the triplet engine), e.g. distillation;
- ``checkpoint_reader``: reads its authors' checkpoint files (``vpr_bench.checkpoints``).

The built model maps images (B, 3, H, W) to L2-normalised descriptors (B, D) and has an int
``descriptor_dim``; ``backbone_facts`` (weights origin, input mean/std) when it has a timm backbone;
``batch_dependent = True`` when a descriptor depends on the other images of its forward pass (a
cross-image encoder): records then say how the images were batched (``protocol.batching``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class FittedFromData(Protocol):
    """A model part of whose architecture is fitted to the training data, not learned by gradient
    (NetVLAD: k-means centroids before training, PCA-whitening after it). The training package decides
    what to fit and when (``vpr_bench.training.fitting``); the model only takes arrays."""

    def local_features(self, images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """(B, N, C) local features the centroids are fitted on; a model with several heads returns them
        by name (``{head: (B, N, C)}``)."""
        ...

    def init_from_features(self, features: np.ndarray | dict[str, np.ndarray], seed: int) -> None:
        """Initialise from (M, C) sampled local features (before training); by name when
        ``local_features`` gave them by name. A model may have ``fitted_from_data = False`` in a
        configuration that fits nothing."""
        ...

    @property
    def whitening_dim(self) -> int | None:
        """The whitened descriptor size, or None for no whitening."""
        ...

    @property
    def unwhitened_dim(self) -> int:
        """The descriptor size before whitening (what training and mining see)."""
        ...

    def set_whitening(self, matrix: np.ndarray | None, bias: np.ndarray | None) -> None:
        """y = matrix · x + bias on the descriptor (after training); None switches it off."""
        ...
