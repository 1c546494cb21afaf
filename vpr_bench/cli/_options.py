"""The CLI's option lists and how they become a ``RunConfig``, in one place; logging set-up."""

from __future__ import annotations

import logging
import sys

import click

from vpr_bench.config import PRESETS, resolve
from vpr_bench.errors import VPRBenchError

log = logging.getLogger("vpr_bench")


def parse_size(value: str | None, form: str = "HxW", example: str = "224x224") -> tuple[int, int] | None:
    """Two integers written ``AxB``, in the order given (``form`` names them for the error)."""
    if value is None:
        return None
    try:
        first, second = (int(v) for v in value.lower().split("x"))
        return first, second
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected {form}, e.g. {example}") from None


def _ints(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers, e.g. 1,5,10,20") from None


def _key_values(values: tuple[str, ...]) -> dict:
    """``KEY=VALUE`` pairs; values read as JSON when they parse (numbers, true/false), else strings."""
    import json

    parsed = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE, e.g. clusters=32")
        try:
            parsed[key] = json.loads(raw)
        except ValueError:
            parsed[key] = raw
    return parsed


def common_options(func):
    """Options shared by ``run`` and ``eval``; each maps to one dotted config field."""
    options = [
        click.option("--method", help="Method name (see `vpr-bench list`)."),
        click.option("--dataset", help="Dataset name, or folder:<path> (see `vpr-bench list`)."),
        click.option("--data-root", help="Dataset root [default: datasets/<name>]."),
        click.option("--struct-dir", help="Extra folder holding .mat structure files."),
        click.option(
            "--cities", help="MSLS: comma-separated cities, in order [default: the split's, val = cph,sf]."
        ),
        click.option(
            "--layout", type=click.Choice(["auto", "netvlad", "tscm"]), help="Image layout of .mat datasets."
        ),
        click.option("--preset", default="demo", show_default=True, type=click.Choice(list(PRESETS))),
        click.option("--backbone", help="timm model name [default: from the preset]."),
        click.option(
            "--pretrained/--no-pretrained", default=None, help="Use ImageNet weights [default: yes]."
        ),
        click.option("--pretrained-file", type=click.Path(), help="Local weights file for the backbone."),
        click.option("--backbone-stage", type=int, help="Cut the backbone after this timm feature stage."),
        click.option("--descriptor-dim", type=int, help="Project descriptors to this size (gem: FC)."),
        click.option("--clusters", type=int, help="NetVLAD clusters [default: 64]."),
        click.option(
            "--pca-dim", type=int, help="NetVLAD: PCA-whiten descriptors to this size after training."
        ),
        click.option(
            "--image-size",
            callback=lambda c, p, v: (0, 0) if v == "native" else parse_size(v),
            help="HxW, or native (each image's own size) [default: the method's, else the preset's].",
        ),
        click.option(
            "--preprocess",
            type=click.Choice(["resize-first", "tensor-resize-first", "normalize-first"]),
            help="resize-first: resize the image (antialiased), then normalise; tensor-resize-first: "
            "resize the tensor (antialiased), then normalise (Bag-of-Queries); normalize-first: the TSCM "
            "release's order (normalise, then resize without antialiasing) [default: the method's, else "
            "resize-first].",
        ),
        click.option(
            "--interpolation",
            type=click.Choice(["bilinear", "bicubic"]),
            help="Resize interpolation [default: the method's, else bilinear].",
        ),
        click.option("--eval-batch-size", type=int, help="Images per batch for descriptor extraction."),
        click.option("--num-workers", type=int, help="DataLoader workers [default: 2]."),
        click.option("--recall-at", callback=lambda c, p, v: _ints(v), help="N values [default: 1,5,10,20]."),
        click.option(
            "--pos-radius", type=float, help="Positive radius in metres [default: the dataset's, 25]."
        ),
        click.option(
            "--drop-queries-without-positives",
            is_flag=True,
            default=None,
            help="Leave such queries out (the STUN/TSCM release's protocol).",
        ),
        click.option("--device", help="auto, cpu, cuda or cuda:N [default: auto]."),
        click.option(
            "--index",
            type=click.Choice(["flat", "ivfpq"]),
            help="faiss index: flat (exact) or ivfpq (approximate) [default: flat].",
        ),
        click.option("--nlist", type=int, help="ivfpq: inverted-file cells [default: 1024]."),
        click.option("--m", "pq_m", type=int, help="ivfpq: product-quantiser sub-vectors [default: 64]."),
        click.option("--nprobe", type=int, help="ivfpq: cells visited per query [default: 16]."),
        click.option(
            "--descriptor-dtype",
            type=click.Choice(["float32", "float16"]),
            help="Database descriptors on disk and in a flat index [default: float32].",
        ),
        click.option("--seed", type=int, help="Random seed [default: 1234]."),
        click.option("--out", type=click.Path(), help="Results folder [default: results]."),
        click.option("--quiet", is_flag=True, default=None, help="No progress bars."),
        click.option(
            "--model-option",
            "model_option",
            multiple=True,
            callback=lambda c, p, v: _key_values(v),
            help="Method-specific setting KEY=VALUE (repeatable), e.g. vit=vit_small_patch16_224.",
        ),
        click.option(
            "--teacher", type=click.Path(), help="Distillation: a teacher run folder or weights file."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


TRAIN_OPTIONS = [
    click.option("--batch-size", type=int, help="Training tuples per batch [paper: 8]."),
    click.option("--epochs", type=int, help="Maximum epochs [paper: 200]."),
    click.option("--lr", type=float, help="Learning rate [paper: 1e-5]."),
    click.option("--weight-decay", type=float, help="Weight decay [paper: 1e-3]."),
    click.option("--lr-gamma", type=float, help="Exponential LR decay per epoch [paper: 0.99]."),
    click.option("--optimizer", type=click.Choice(["adam", "sgd"]), help="[default: adam]"),
    click.option("--negatives", type=int, help="Hard negatives per tuple [paper: 10]."),
    click.option("--negative-samples", type=int, help="Random negatives drawn per query [paper: 1000]."),
    click.option("--margin", type=float, help="Triplet margin [paper: 0.1]."),
    click.option(
        "--mining-margin",
        type=float,
        help="A negative is hard when d(q, n) < d(q, p) + this [default: √margin, as NetVLAD].",
    ),
    click.option(
        "--distance",
        type=click.Choice(["l2", "squared-l2", "cosine"]),
        help="Distance of the triplet loss [default: l2].",
    ),
    click.option(
        "--reduction",
        type=click.Choice(["mean", "sum", "avg-nonzero"]),
        help="How the triplet losses of a batch are reduced [default: mean].",
    ),
    click.option(
        "--train-pos-radius",
        type=float,
        help="Non-trivial training positives within this many metres [default: the dataset's, 10].",
    ),
    click.option("--loss", help="Training loss (see `vpr-bench list`) [default: triplet]."),
    click.option("--cache-refresh", type=int, help="Batches between cache refreshes; 0 = once per epoch."),
    click.option("--patience", type=int, help="Epochs without val R@1 gain before stopping [paper: 10]."),
    click.option("--checkpoint-every", type=int, help="Batches between mid-epoch checkpoints [default: 50]."),
    click.option("--queries-per-epoch", type=int, help="Training queries per epoch; 0 = all."),
    click.option("--kd-weight", type=float, help="Distillation: weight of the KD term [default: 1]."),
    click.option(
        "--mining-space",
        type=click.Choice(["teacher", "student"]),
        help="Distillation: mine the student's tuples in this model's space [default: teacher].",
    ),
    click.option(
        "--tensorboard",
        is_flag=True,
        default=None,
        help="Also log the training curves (training.csv) for TensorBoard, in the run folder.",
    ),
    click.option(
        "--log-dir",
        type=click.Path(),
        metavar="DIR",
        help="TensorBoard event files under DIR/<dataset>/<method>/<run-id> (implies --tensorboard).",
    ),
]


def train_options(func):
    for option in reversed(TRAIN_OPTIONS):
        func = option(func)
    return func


def build_config(preset: str, from_file: dict | None = None, config_file: dict | None = None, **o):
    """The run's configuration: preset < a ``--config`` file (``config_file``: its dotted settings) <
    what a checkpoint file decides (``from_file``) < the flags."""
    for name, key in (("method", "model.method"), ("dataset", "data.dataset")):
        if not o.get(name) and not (config_file or {}).get(key):
            raise click.UsageError(f"missing option --{name}")
    model_options = {k: o[k] for k in ("clusters", "pca_dim") if o.get(k) is not None}
    model_options.update(o.get("model_option") or {})
    values = {
        "data.dataset": o["dataset"],
        "data.preprocess": o.get("preprocess"),
        "data.interpolation": o.get("interpolation"),
        "model.options": model_options or None,
        "data.data_root": o["data_root"],
        "data.struct_dir": o["struct_dir"],
        "data.cities": o.get("cities"),
        "data.layout": o["layout"],
        "data.image_size": o["image_size"],
        "data.pos_radius": o["pos_radius"],
        "data.drop_queries_without_positives": o["drop_queries_without_positives"],
        "model.method": o["method"],
        "model.backbone": o["backbone"],
        "model.pretrained": o["pretrained"],
        "model.pretrained_file": o["pretrained_file"],
        "model.backbone_stage": o["backbone_stage"],
        "model.descriptor_dim": o["descriptor_dim"],
        "eval.batch_size": o["eval_batch_size"],
        "eval.num_workers": o["num_workers"],
        "eval.recall_at": o["recall_at"],
        "eval.device": o["device"],
        "eval.index": o.get("index"),
        "eval.nlist": o.get("nlist"),
        "eval.m": o.get("pq_m"),
        "eval.nprobe": o.get("nprobe"),
        "eval.descriptor_dtype": o.get("descriptor_dtype"),
        "eval.split": o.get("split"),
        "seed": o["seed"],
        "out": o["out"],
        "quiet": o["quiet"],
        "distill.teacher": o.get("teacher"),
        "distill.kd_loss": o.get("kd_loss"),
        "distill.kd_weight": o.get("kd_weight"),
        "distill.mining_space": o.get("mining_space"),
    }
    for key in (
        "batch_size",
        "epochs",
        "lr",
        "weight_decay",
        "lr_gamma",
        "optimizer",
        "negatives",
        "negative_samples",
        "margin",
        "cache_refresh",
        "patience",
        "checkpoint_every",
        "queries_per_epoch",
        "loss",
        "mining_margin",
        "distance",
        "reduction",
        "tensorboard",
        "log_dir",
    ):
        values[f"train.{key}"] = o.get(key)
    values["data.train_pos_radius"] = o.get("train_pos_radius")
    cfg = resolve(preset, values, from_file, config_file)
    if cfg.train.tensorboard or cfg.train.log_dir:  # fail at start-up, not after the first epoch
        from vpr_bench.training.curves import require_tensorboard

        require_tensorboard()
    from vpr_bench.methods import check_model_config
    from vpr_bench.registry import DATASETS, KD_LOSSES, LOSSES, METHODS, PIPELINES

    if cfg.model.method not in PIPELINES:  # unknown names fail now, listing the valid ones, before any work
        try:
            METHODS.get(cfg.model.method)
        except VPRBenchError:
            valid = ", ".join(sorted(METHODS.display_names() + PIPELINES.display_names()))
            raise VPRBenchError(f"unknown method {cfg.model.method!r}; valid: {valid}") from None
    check_model_config(cfg.model, PIPELINES if cfg.model.method in PIPELINES else METHODS)
    if cfg.distill.kd_loss and "," not in cfg.distill.kd_loss:
        KD_LOSSES.get(cfg.distill.kd_loss)
    DATASETS.resolve(cfg.data.dataset)
    LOSSES.get(cfg.train.loss)
    return cfg


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (it may be swapped after set-up)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(quiet: bool) -> None:
    handler = next((h for h in log.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    log.setLevel(logging.INFO)
    log.propagate = False


KD_LOSS_OPTION = click.option(
    "--kd-loss", help="Distillation loss (see `vpr-bench list`) [default: the method's, tscm: cross-metric]."
)


def pipeline_of(method: str):
    from vpr_bench.registry import PIPELINES

    return PIPELINES.get(method).builder if method in PIPELINES else None
