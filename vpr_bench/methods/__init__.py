"""Methods: builders that turn a ``ModelConfig`` into a descriptor network. Importing registers them."""

from torch import nn

from vpr_bench.config import ModelConfig
from vpr_bench.methods import gem, netvlad  # noqa: F401  (registration)
from vpr_bench.registry import METHODS


def build_method(cfg: ModelConfig) -> nn.Module:
    """The method's network: ``images (B, 3, H, W) → L2-normalised descriptors (B, D)``."""
    model = METHODS.build(cfg.method, cfg)
    if not isinstance(getattr(model, "descriptor_dim", None), int):
        raise TypeError(f"method {cfg.method!r} must return a module with an int 'descriptor_dim'")
    return model


__all__ = ["build_method"]
