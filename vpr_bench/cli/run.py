"""Training and evaluation commands: ``run``, ``ablate``, ``eval``."""

from __future__ import annotations

import click

from vpr_bench.cli._app import cli
from vpr_bench.cli._options import (
    KD_LOSS_OPTION,
    build_config,
    common_options,
    pipeline_of,
    setup_logging,
    train_options,
)
from vpr_bench.errors import VPRBenchError


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
        setup_logging(not main)
        run_dirs = [train_run(resume=resume)]
    else:
        cfg = build_config(**options)
        setup_logging(cfg.quiet or not main)
        pipeline = pipeline_of(cfg.model.method)
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
    setup_logging(cfg.quiet)
    pipeline = pipeline_of(cfg.model.method)
    if pipeline is None or not hasattr(pipeline, "ablate"):
        raise VPRBenchError(f"--method {cfg.model.method}: not a distillation pipeline (e.g. tscm)")
    losses = [name.strip() for name in options["kd_loss"].split(",") if name.strip()]
    out = pipeline.ablate(cfg, losses)
    click.echo((out / "ablation.md").read_text(), nl=False)
    click.echo(f"ablation table written to {out}")


def official_weights(method: str, spec: str) -> str:
    """The local path of ``--weights official[:FILE]`` for ``method`` (fetched by the method)."""
    from vpr_bench.registry import METHODS

    kind, _, choice = spec.partition(":")
    if kind != "official":
        raise click.BadParameter(f"{spec!r}: expected official or official:FILE", param_hint="--weights")
    fetch = METHODS.get(method).attributes.get("fetch_weights") if method in METHODS else None
    if fetch is None:
        raise VPRBenchError(f"--weights official: {method or 'the method'} publishes no official weights")
    return str(fetch(choice or None))


@cli.command("eval")
@common_options
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--checkpoint", type=click.Path(), help="Weights file or run folder to evaluate.")
@click.option("--untrained", is_flag=True, help="Evaluate the architecture as built (no trained weights).")
@click.option(
    "--weights",
    help="official or official:FILE — the authors' published file (downloaded once into the torch hub "
    "cache), for methods that publish weights (see vpr-bench list).",
)
@click.option("--query-model", help="Pipelines (tscm): the model describing the queries [student].")
@click.option("--database-model", help="Pipelines (tscm): the model describing the database [teacher].")
def evaluate(checkpoint, untrained, weights, query_model, database_model, **options) -> None:
    """Evaluate a method (untrained or from a checkpoint) on one split and write a result record."""
    if sum(map(bool, (checkpoint, untrained, weights))) > 1:
        raise click.UsageError("--checkpoint, --weights and --untrained exclude each other")
    if weights:
        checkpoint = official_weights(options.get("method") or "", weights)
    from vpr_bench import distributed

    distributed.init(options.get("device") or "auto")
    if not distributed.is_main():  # under torchrun, one evaluation and one record: rank 0's
        return
    from vpr_bench.runner import evaluate_run

    pipeline = pipeline_of(options.get("method") or "")
    read = None
    if checkpoint and pipeline is None and options.get("method"):  # the file may decide the variant
        from vpr_bench.checkpoints import read_method_checkpoint
        from vpr_bench.registry import METHODS

        if options["method"] in METHODS:
            read = read_method_checkpoint(options["method"], checkpoint)
    cfg = build_config(from_file=read.settings if read else None, **options)
    setup_logging(cfg.quiet)
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
