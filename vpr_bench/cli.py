"""The ``vpr-bench`` command line. It parses options into a ``RunConfig`` and calls the runner."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from vpr_bench import __version__, load_all
from vpr_bench.config import PRESETS, resolve
from vpr_bench.errors import VPRBenchError

log = logging.getLogger("vpr_bench")


def _size(value: str | None, form: str = "HxW", example: str = "224x224") -> tuple[int, int] | None:
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
            "--image-size", callback=lambda c, p, v: _size(v), help="HxW [default: from the preset]."
        ),
        click.option(
            "--preprocess",
            type=click.Choice(["resize-first", "normalize-first"]),
            help="resize-first: antialiased resize, then normalise; normalize-first: the TSCM release's "
            "order (normalise, then bilinear resize without antialiasing) [default: resize-first; "
            "normalize-first for TSCM release checkpoints].",
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
]


def train_options(func):
    for option in reversed(TRAIN_OPTIONS):
        func = option(func)
    return func


def build_config(preset: str, from_file: dict | None = None, **o):
    """The run's configuration: preset < what a checkpoint file decides (``from_file``) < the flags."""
    for name in ("method", "dataset"):
        if not o.get(name):
            raise click.UsageError(f"missing option --{name}")
    model_options = {k: o[k] for k in ("clusters", "pca_dim") if o.get(k) is not None}
    model_options.update(o.get("model_option") or {})
    values = {
        "data.dataset": o["dataset"],
        "data.preprocess": o.get("preprocess"),
        "model.options": model_options or None,
        "data.data_root": o["data_root"],
        "data.struct_dir": o["struct_dir"],
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
    ):
        values[f"train.{key}"] = o.get(key)
    values["data.train_pos_radius"] = o.get("train_pos_radius")
    cfg = resolve(preset, values, from_file)
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


def _setup_logging(quiet: bool) -> None:
    handler = next((h for h in log.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    log.setLevel(logging.INFO)
    log.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vpr-bench")
def cli() -> None:
    """vpr-bench: train, evaluate and compare visual place recognition methods."""
    load_all()  # the built-ins, then the plugins: the one place the registries are filled


KD_LOSS_OPTION = click.option(
    "--kd-loss", help="Distillation loss (see `vpr-bench list`) [default: the method's, tscm: cross-metric]."
)


def _pipeline(method: str):
    from vpr_bench.registry import PIPELINES

    return PIPELINES.get(method).builder if method in PIPELINES else None


@cli.command()
@common_options
@train_options
@KD_LOSS_OPTION
@click.option("--resume", "resume", type=click.Path(), help="Continue the interrupted run in this folder.")
def run(resume, **options) -> None:
    """Train a method on a dataset's train split (validating on val), test its best weights, record it."""
    from vpr_bench import distributed
    from vpr_bench.runner import train_run

    distributed.init(options.get("device") or "auto")  # under torchrun; a no-op otherwise
    main = distributed.is_main()
    if resume:
        given = [k for k, v in options.items() if v not in (None, {}, ()) and k != "preset"]
        if given:
            raise click.UsageError(
                f"--resume uses the run's own config.json; drop --{given[0].replace('_', '-')}"
            )
        _setup_logging(not main)
        run_dirs = [train_run(resume=resume)]
    else:
        cfg = build_config(**options)
        _setup_logging(cfg.quiet or not main)
        pipeline = _pipeline(cfg.model.method)
        run_dirs = pipeline.run(cfg) if pipeline is not None else [train_run(cfg)]
    if main:
        for run_dir in run_dirs:
            click.echo(f"record written to {run_dir}")


@cli.command()
@common_options
@train_options
@click.option(
    "--kd-loss",
    required=True,
    help="Comma-separated distillation losses, one student each (e.g. cross-metric,mse,rkd,stun,none).",
)
def ablate(**options) -> None:
    """Train one teacher (or reuse --teacher) and one student per KD loss; write an ablation table."""
    cfg = build_config(**options)
    _setup_logging(cfg.quiet)
    pipeline = _pipeline(cfg.model.method)
    if pipeline is None or not hasattr(pipeline, "ablate"):
        raise VPRBenchError(f"--method {cfg.model.method}: not a distillation pipeline (e.g. tscm)")
    losses = [name.strip() for name in options["kd_loss"].split(",") if name.strip()]
    out = pipeline.ablate(cfg, losses)
    click.echo((out / "ablation.md").read_text(), nl=False)
    click.echo(f"ablation table written to {out}")


@cli.command("eval")
@common_options
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--checkpoint", type=click.Path(), help="Weights file or run folder to evaluate.")
@click.option("--untrained", is_flag=True, help="Evaluate the architecture as built (no trained weights).")
@click.option("--query-model", help="Pipelines (tscm): the model describing the queries [student].")
@click.option("--database-model", help="Pipelines (tscm): the model describing the database [teacher].")
def evaluate(checkpoint, untrained, query_model, database_model, **options) -> None:
    """Evaluate a method (untrained or from a checkpoint) on one split and write a result record."""
    if checkpoint and untrained:
        raise click.UsageError("--checkpoint and --untrained exclude each other")
    from vpr_bench import distributed

    distributed.init(options.get("device") or "auto")
    if not distributed.is_main():  # under torchrun, one evaluation and one record: rank 0's
        return
    from vpr_bench.runner import evaluate_run

    pipeline = _pipeline(options.get("method") or "")
    read = None
    if checkpoint and pipeline is None and options.get("method"):  # the file may decide the variant
        from vpr_bench.checkpoints import read_method_checkpoint
        from vpr_bench.registry import METHODS

        if options["method"] in METHODS:
            read = read_method_checkpoint(options["method"], checkpoint)
    cfg = build_config(from_file=read.settings if read else None, **options)
    _setup_logging(cfg.quiet)
    if pipeline is not None:
        run_dir = pipeline.evaluate(
            cfg, checkpoint, query_model or "student", database_model or "teacher", untrained
        )
        click.echo(f"record written to {run_dir}")
        return
    if query_model or database_model:
        raise click.UsageError("--query-model/--database-model apply to pipelines such as tscm")
    run_dir = evaluate_run(cfg, checkpoint=read or checkpoint, command="eval")
    click.echo(f"record written to {run_dir}")


@cli.command("list")
@click.option("--method", "method", help="Show this method's options (with defaults) and presets.")
def list_(method) -> None:
    """List datasets, methods, metrics and losses, with where each comes from."""
    from vpr_bench.plugins import plugin_statuses
    from vpr_bench.registry import ALL_REGISTRIES, METHODS, PIPELINES

    if method:
        registry = PIPELINES if method in PIPELINES else METHODS
        entry = registry.get(method)
        _show_method(entry)
        return

    for registry in ALL_REGISTRIES:
        entries = registry.entries()
        click.echo(f"{registry.plural}:")
        width = max((len(e.name) + 6 * e.name.endswith(":") for e in entries), default=0)
        for e in entries:
            name = e.name + "<path>" if e.name.endswith(":") else e.name
            click.echo(f"  {name.ljust(width)}  {e.description}  [{e.source}]")
        click.echo("")
    statuses = plugin_statuses()
    click.echo("plugins:" if statuses else "plugins: none installed")
    for s in statuses:
        state = "ok" if s.ok else f"FAILED: {s.error}"
        click.echo(f"  {s.name} ({s.distribution}, {s.target}): {state}")


def _show_method(entry) -> None:
    from vpr_bench.options import NoOptions, describe

    click.echo(f"{entry.name}: {entry.description}  [{entry.source}]")
    rows = describe(entry.attributes.get("options", NoOptions))
    click.echo("options (--model-option KEY=VALUE):" if rows else "options: none")
    width = max((len(f"{name}={default}") for name, default, _ in rows), default=0)
    for name, default, help_ in rows:
        click.echo(f"  {f'{name}={default}'.ljust(width)}  {help_}")
    honoured = entry.attributes.get("descriptor_dim", False)
    hint = entry.attributes.get("descriptor_dim_hint", "")
    click.echo(f"--descriptor-dim: {'honoured' if honoured else 'refused (' + hint + ')'}")
    for preset, values in sorted(entry.attributes.get("presets", {}).items()):
        click.echo(f"preset {preset}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


@cli.command()
@click.option("--dataset", "datasets_", multiple=True, help="Only runs on this dataset (repeatable).")
@click.option("--method", "methods", multiple=True, help="Only runs of this method (repeatable).")
@click.option(
    "--all/--best",
    "all_runs",
    default=False,
    help="Every run, or the best run per method and dataset [default: --best].",
)
@click.option("--sort", default="R@1", show_default=True, help="Column to sort by (best first).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "csv", "latex", "json"]),
    default="table",
    show_default=True,
)
@click.option("--output", type=click.Path(), help="Write to this file instead of the terminal.")
@click.option("--results", "results_dir", default="results", show_default=True, type=click.Path())
def compare(datasets_, methods, all_runs, sort, fmt, output, results_dir) -> None:
    """Leaderboard of recorded runs: one row per method (best run), one column group per dataset."""
    from vpr_bench._io import atomic_write_text
    from vpr_bench.results import load_records
    from vpr_bench.results.table import build_table, render

    _setup_logging(False)
    records = [
        r
        for r in load_records(results_dir)
        if (not datasets_ or r.get("dataset") in datasets_) and (not methods or r.get("method") in methods)
    ]
    if not records:
        raise VPRBenchError(
            f"no result records in {results_dir}"
            + (f" for dataset {', '.join(datasets_)}" if datasets_ else "")
            + (f" for method {', '.join(methods)}" if methods else "")
        )
    text = render(build_table(records, best=not all_runs, sort=sort), fmt, width=None if output else 80)
    if output:
        atomic_write_text(output, text)
        click.echo(f"{fmt} written to {output}")
    else:
        click.echo(text, nl=False)


def _select_runs(results_dir: str, datasets_: tuple, runs: tuple) -> list:
    """Runs named by id or folder, else the best run per method on the given datasets."""
    from vpr_bench.results import load_records
    from vpr_bench.results.table import select

    records = [r for r in load_records(results_dir) if not datasets_ or r.get("dataset") in datasets_]
    if runs:
        wanted = {Path(r).name for r in runs}
        chosen = [r for r in records if r.run_id in wanted or r.run_dir.name in wanted]
        missing = wanted - {r.run_dir.name for r in chosen}
        if missing:
            raise VPRBenchError(f"no finished run {sorted(missing)[0]!r} in {results_dir}")
        return chosen
    chosen = [run for row in select(records, best=True) for run in row.runs.values()]
    if not chosen:
        raise VPRBenchError(
            f"no result records in {results_dir}" + (f" for {datasets_[0]}" if datasets_ else "")
        )
    return chosen


@cli.group()
def plot() -> None:
    """Figures for papers: Recall@N curves, retrieval grids, accuracy vs cost (PNG)."""


PLOT_OPTIONS = [
    click.option("--dataset", "datasets_", multiple=True, help="Only runs on this dataset (repeatable)."),
    click.option("--results", "results_dir", default="results", show_default=True, type=click.Path()),
    click.option("--output", required=True, type=click.Path(), help="PNG file to write."),
    click.option(
        "--size",
        callback=lambda c, p, v: _size(v, "WxH", "800x600"),
        help="WxH in pixels [default: 800x600].",
    ),
]


def _plot_runs(draw, datasets_, results_dir, output, size, runs) -> None:
    _setup_logging(False)
    path = draw(_select_runs(results_dir, datasets_, runs), output, size or (800, 600))
    click.echo(f"written {path}")


def plot_options(func):
    for option in reversed(PLOT_OPTIONS):
        func = option(func)
    return func


@plot.command("recall")
@plot_options
@click.argument("runs", nargs=-1)
def plot_recall(datasets_, results_dir, output, size, runs) -> None:
    """Recall@N curves of RUNS (ids or folders), or of the best run per method."""
    from vpr_bench.results.plots import recall_curves

    _plot_runs(recall_curves, datasets_, results_dir, output, size, runs)


@plot.command("cost")
@plot_options
@click.argument("runs", nargs=-1)
def plot_cost(datasets_, results_dir, output, size, runs) -> None:
    """R@1 against ms/image, bubble size = parameters: RUNS, or the best run per method."""
    from vpr_bench.results.plots import cost_accuracy

    _plot_runs(cost_accuracy, datasets_, results_dir, output, size, runs)


@plot.command("retrievals")
@click.argument("run", type=click.Path())
@click.option("--queries", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--failures", is_flag=True, help="Show queries whose top-1 is wrong first.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which queries are drawn.")
@click.option("--results", "results_dir", default="results", show_default=True, type=click.Path())
@click.option("--output", required=True, type=click.Path(), help="PNG file to write.")
@click.option(
    "--size",
    callback=lambda c, p, v: _size(v, "WxH", "800x600"),
    help="WxH in pixels [default: from the grid].",
)
def plot_retrievals(run, queries, top, failures, seed, results_dir, output, size) -> None:
    """RUN's queries and their top matches (green = correct, red = wrong) with distances."""
    from vpr_bench.results.plots import retrieval_grid

    _setup_logging(False)
    run_dir = Path(run) if Path(run).is_dir() else _select_runs(results_dir, (), (run,))[0].run_dir
    path = retrieval_grid(run_dir, output, queries, top, failures, seed, size)
    click.echo(f"written {path}")


@cli.group()
def datasets() -> None:
    """Make and inspect datasets."""


@datasets.command()
@click.option(
    "--places",
    type=click.IntRange(min=1),
    default=480,
    show_default=True,
    help="Database images in the test (and val) split; train has twice as many.",
)
@click.option(
    "--queries", type=click.IntRange(min=0), default=0, help="Queries per test split [default: places/2]."
)
@click.option(
    "--splits",
    default="train,val,test",
    show_default=True,
    help="Comma-separated splits to make (test alone for a large evaluation-only set).",
)
@click.option("--out", type=click.Path(), required=True, help="Folder to create.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes [default: all cores].")
def synth(places, queries, splits, out, seed, workers) -> None:
    """Generate a synthetic street dataset (folder layout) of any size."""
    from vpr_bench.datasets.synthetic import SynthConfig, generate, is_complete, read_marker

    _setup_logging(False)
    import json

    chosen = tuple(name.strip() for name in splits.split(",") if name.strip())
    cfg = SynthConfig(places=places, queries=queries, seed=seed, splits=chosen)
    target = Path(out)
    if target.exists():
        if is_complete(target) and read_marker(target)["config"] == json.loads(json.dumps(cfg.__dict__)):
            click.echo(f"{target} already holds this dataset")
            return
        raise VPRBenchError(f"--out {target} already exists; remove it or choose another folder")
    generate(target, cfg, workers)
    click.echo(f"synthetic dataset written to {target}")


def main(args: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        cli.main(args=args, prog_name="vpr-bench", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        hint = " (see --help)" if isinstance(exc, click.UsageError) else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except VPRBenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
