"""``vpr_bench.api``: everything a plugin may import from vpr-bench, and nothing else.

A plugin is an installable package declaring an entry point in the ``vpr_bench.plugins`` group; the
module it names registers what the plugin adds when ``vpr_bench.load_all()`` imports it::

    from vpr_bench import api

    @dataclasses.dataclass(frozen=True)
    class MyOptions:
        width: int = api.option(256, "Width of the head.", minimum=1)

    @api.register_method("mine", "backbone + my head", options=MyOptions, descriptor_dim=True)
    def mine(cfg: api.ModelConfig, options: MyOptions) -> nn.Module: ...

The names here are the stable surface: the rest of ``vpr_bench`` may change between versions. Tests use
``vpr_bench.testing`` as well. ``examples/plugin-template/`` is a plugin to copy.
"""

from vpr_bench import distributed, load_all
from vpr_bench._io import WriteError, atomic_write_bytes, atomic_write_json, atomic_write_text
from vpr_bench.checkpoints import MethodCheckpoint, read_method_checkpoint, refuse_folder_of_runs
from vpr_bench.config import (
    DataConfig,
    DistillConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    apply_file_settings,
    check_setting,
)
from vpr_bench.config import resolve as resolve_config
from vpr_bench.datasets import load_split
from vpr_bench.devices import device_name, resolve_device
from vpr_bench.errors import CheckpointError, ConfigError, DatasetError, RegistryError, VPRBenchError
from vpr_bench.evaluation.engine import evaluate as evaluate_model
from vpr_bench.evaluation.scoring import MetricInputs, MetricResult
from vpr_bench.layers import GeM, L2Norm, NetVLAD
from vpr_bench.methods import build_method
from vpr_bench.methods.backbones import create_backbone, create_timm_model, normalisation
from vpr_bench.methods.parts import leading_stages, trainable_parts
from vpr_bench.models_io import LoadedWeights, load_model
from vpr_bench.options import NoOptions, option
from vpr_bench.published import OfficialFile, Published, PublishedFigure
from vpr_bench.registry import (
    KD_LOSSES,
    METHODS,
    register_dataset,
    register_distance,
    register_kd_loss,
    register_loss,
    register_method,
    register_metric,
    register_pipeline,
    register_reduction,
)
from vpr_bench.results.ablation import write_ablation_table
from vpr_bench.results.store import Record
from vpr_bench.runner import evaluate_and_record as evaluate
from vpr_bench.runner import seed_everything
from vpr_bench.runner import train_run as train
from vpr_bench.settings import setting
from vpr_bench.spec import MethodSpec, TrainedParts
from vpr_bench.training import state as training_state
from vpr_bench.training.trainer import Trainer
from vpr_bench.training.tuples import batch_rows

__all__ = [
    # registering what a plugin adds
    "register_method", "register_pipeline", "register_dataset", "register_metric", "register_loss",
    "register_kd_loss", "register_distance", "register_reduction", "MethodSpec", "option", "setting",
    "NoOptions", "Published", "PublishedFigure", "OfficialFile", "METHODS", "KD_LOSSES", "MetricInputs",
    "MetricResult", "TrainedParts",
    "load_all",
    # configuration and data
    "load_split",
    "RunConfig", "DataConfig", "ModelConfig", "EvalConfig", "TrainConfig", "DistillConfig",
    "resolve_config", "apply_file_settings", "check_setting",
    # models: building blocks, building, loading weights files
    "build_method", "create_backbone", "create_timm_model", "normalisation", "GeM", "L2Norm", "NetVLAD",
    "leading_stages", "trainable_parts",
    "load_model", "LoadedWeights", "MethodCheckpoint", "read_method_checkpoint",
    "refuse_folder_of_runs",
    # training and evaluating a configuration
    "train", "evaluate", "evaluate_model", "Trainer", "batch_rows", "training_state", "distributed",
    "seed_everything", "resolve_device", "device_name",
    # results
    "Record", "write_ablation_table", "atomic_write_text", "atomic_write_json", "atomic_write_bytes",
    # errors
    "VPRBenchError", "ConfigError", "CheckpointError", "DatasetError", "RegistryError", "WriteError",
]  # fmt: skip
