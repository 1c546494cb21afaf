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


def _parse_seeds(ctx, param, value):
    if value is None:
        return None
    try:
        seeds = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers, e.g. 1,2,3") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{value!r}: expected distinct seeds, e.g. 1,2,3")
    return seeds


SEEDS_OPTION = click.option(
    "--seeds",
    callback=_parse_seeds,
    help="Comma-separated seeds, one run each (e.g. 1,2,3; replaces --seed); `compare --seed-mean` "
    "then shows mean ± std over them.",
)


def _with_seed(cfg, seed: int):
    import copy

    one = copy.deepcopy(cfg)
    one.seed = seed
    return one


@cli.command()
@common_options
@train_options
@KD_LOSS_OPTION
@click.option("--resume", "resume", type=click.Path(), help="Continue the interrupted run in this folder.")
@click.option(
    "--config",
    "config",
    type=click.Path(),
    metavar="FILE",
    help="Settings from a file: a run's config.json (replay it) or YAML/JSON with its keys; flags given "
    "override it, it overrides the preset.",
)
@SEEDS_OPTION
@click.pass_context
def run(ctx, resume, config, seeds, **options) -> None:
    """Train a method on a dataset's train split (validating on val), test its best weights, record it."""
    from vpr_bench import distributed
    from vpr_bench.config import read_config_file
    from vpr_bench.runner import train_run

    if resume and config:
        raise click.UsageError("--resume uses the run's own config.json; drop --config")
    if resume and seeds:
        raise click.UsageError("--resume continues one run; drop --seeds")
    config_file = read_config_file(config) if config else None
    if config_file and ctx.get_parameter_source("preset") is click.core.ParameterSource.DEFAULT:
        options["preset"] = config_file.get("preset", options["preset"])  # the file's, unless given
    device = options.get("device") or (config_file or {}).get("eval.device") or "auto"
    distributed.init(device)  # under torchrun; a no-op otherwise
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
        cfg = build_config(config_file=config_file, **options)
        setup_logging(cfg.quiet or not main)
        pipeline = pipeline_of(cfg.model.method)
        run_dirs = []
        for one in [_with_seed(cfg, seed) for seed in seeds] if seeds else [cfg]:
            run_dirs += pipeline.run(one) if pipeline is not None else [train_run(one)]
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
@SEEDS_OPTION
def ablate(seeds, **options) -> None:
    """Train one teacher (or reuse --teacher) and one student per KD loss; write an ablation table.
    With --seeds: a teacher and its students per seed, and the table of seed means."""
    cfg = build_config(**options)
    setup_logging(cfg.quiet)
    pipeline = pipeline_of(cfg.model.method)
    if pipeline is None or not hasattr(pipeline, "ablate"):
        raise VPRBenchError(f"--method {cfg.model.method}: not a distillation pipeline (e.g. tscm)")
    losses = [name.strip() for name in options["kd_loss"].split(",") if name.strip()]
    out = pipeline.ablate(cfg, losses, seeds=seeds)
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
