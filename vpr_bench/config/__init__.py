"""Typed configuration, one dataclass per concern (``sections``), filled from a preset (``presets``), a
``--config`` file (``files``), what a checkpoint file decides and the flags (``resolve``). Each setting
is declared once, on its field (``vpr_bench.settings``)."""

from vpr_bench.config.files import RECORD_KEYS, file_settings, read_config_file
from vpr_bench.config.presets import PRESETS
from vpr_bench.config.resolve import apply, apply_file_settings, check_against_file, method_presets, resolve
from vpr_bench.config.sections import (
    INTERPOLATIONS,
    NATIVE,
    PREPROCESSING,
    SECTIONS,
    DataConfig,
    DistillConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    check_setting,
    parse_image_size,
    parse_ints,
)

__all__ = [
    "INTERPOLATIONS",
    "NATIVE",
    "PREPROCESSING",
    "PRESETS",
    "RECORD_KEYS",
    "SECTIONS",
    "DataConfig",
    "DistillConfig",
    "EvalConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "apply",
    "apply_file_settings",
    "check_setting",
    "check_against_file",
    "file_settings",
    "method_presets",
    "parse_image_size",
    "parse_ints",
    "read_config_file",
    "resolve",
]
