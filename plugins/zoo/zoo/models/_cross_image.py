"""The cross-image encoder of F. Lu et al.'s CricaVPR (CVPR 2024) and SuperVLAD (NeurIPS 2024), as their
official code runs it at evaluation (Lu-Feng/CricaVPR f53e941, Lu-Feng/SuperVLAD d994ba4).

A PyTorch ``nn.TransformerEncoder`` of post-norm layers (16 heads, GELU, feed-forward 2048, dropout 0.1:
inactive at evaluation) built with ``batch_first=False`` and given the (B, T, C) tokens of the B images
of one forward pass: it reads them as a sequence of B images for each of the T token positions, so
every image attends to the other images of its batch. A descriptor therefore depends on the images it is
described with (the authors confirm it: Lu-Feng/CricaVPR issues 2 and 7): the models carry
``batch_dependent`` and the evaluation records its batches. Without positional encoding, the order of
the images within a batch does not matter. Its keys are the official ones (``encoder.layers.<i>.*``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEADS = 16  # not in the file: the official constructor's


def cross_image_encoder(channels: int, layers: int, feedforward: int) -> nn.TransformerEncoder:
    """(B images, T tokens, C) → (B, T, C): each token position's B images attend to each other."""
    layer = nn.TransformerEncoderLayer(
        channels, HEADS, dim_feedforward=feedforward, dropout=0.1, activation="gelu", batch_first=False
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def encoder_options(state: dict) -> dict:
    """The encoder's layers and feed-forward width an official state dict holds (none: no encoder)."""
    layers = {k.split(".")[2] for k in state if k.startswith("encoder.layers.")}
    if not layers:
        return {"encoder_layers": 0}
    return {
        "encoder_layers": len(layers),
        "encoder_feedforward": state["encoder.layers.0.linear1.weight"].shape[0],
    }


def describe_batch(encoder: nn.TransformerEncoder, tokens: torch.Tensor) -> torch.Tensor:
    """(B, T, C) tokens of one batch → (B, T·C) L2-normalised descriptors, flattened token-major."""
    return F.normalize(encoder(tokens).flatten(1), dim=-1)
