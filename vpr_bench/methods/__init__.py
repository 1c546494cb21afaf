"""Methods: builders that turn a ``ModelConfig`` into a descriptor network (the contract:
``vpr_bench.methods.base``). Importing registers the built-in ones."""

from torch import nn

from vpr_bench.config import ModelConfig
from vpr_bench.errors import ConfigError
from vpr_bench.methods import gem, netvlad  # noqa: F401  (registration)
from vpr_bench.options import parse
from vpr_bench.registry import METHODS


def check_model_config(cfg: ModelConfig, registry=METHODS):
    """The typed options of ``cfg.method`` (a method, or a pipeline with ``registry=PIPELINES``), after
    checking them and ``--descriptor-dim``; fails before any work, in one line."""
    spec = registry.get(cfg.method).spec
    options = parse(spec.options, cfg.options, cfg.method)
    if cfg.descriptor_dim is not None and not spec.descriptor_dim:
        raise ConfigError(
            f"--descriptor-dim: {cfg.method} cannot set its descriptor size; {spec.descriptor_dim_hint}"
        )
    return options


def check_trainable(method: str) -> None:
    """A ConfigError, before any work, where ``vpr-bench run`` cannot train ``method``
    (``MethodSpec.trainable``)."""
    if not METHODS.get(method).spec.trainable:
        raise ConfigError(
            f"--method {method}: evaluation only (its authors' files: vpr-bench eval --method {method} "
            "--checkpoint FILE); `vpr-bench list` marks the methods it can train"
        )


def build_method(cfg: ModelConfig) -> nn.Module:
    """The method's network: ``images (B, 3, H, W) → L2-normalised descriptors (B, D)``."""
    options = check_model_config(cfg)
    model = METHODS.get(cfg.method).builder(cfg, options)
    if not isinstance(getattr(model, "descriptor_dim", None), int):
        raise TypeError(f"method {cfg.method!r} must return a module with an int 'descriptor_dim'")
    return model


__all__ = ["build_method", "check_model_config", "check_trainable"]
