"""Training and evaluation commands: ``run``, ``ablate``, ``eval``."""

from __future__ import annotations

import dataclasses

import click

from vpr_bench.cli._app import cli
from vpr_bench.cli._options import build_config, config_options, given_settings, pipeline_of, setup_logging
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
@config_options("run")
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
def run(resume, config, seeds, **options) -> None:
    """Train a method on a dataset's train split (validating on val), test its best weights, record it."""
    from vpr_bench import distributed
    from vpr_bench.config import read_config_file
    from vpr_bench.runner import train_run

    if resume and config:
        raise click.UsageError("--resume uses the run's own config.json; drop --config")
    if resume and seeds:
        raise click.UsageError("--resume continues one run; drop --seeds")
    config_file = read_config_file(config) if config else None
    device = options.get("eval__device") or (config_file or {}).get("eval.device") or "auto"
    distributed.init(device)  # under torchrun; a no-op otherwise
    main = distributed.is_main()
    if resume:
        given = [key for key in given_settings(options) if key != "quiet"]  # --quiet only changes the screen
        if given:
            flag = "--" + given[0].rpartition(".")[2].replace("_", "-")
            raise click.UsageError(f"--resume uses the run's own config.json; drop {flag}")
        setup_logging(bool(options.get("quiet")) or not main)
        run_dirs = [train_run(resume=resume, quiet=options.get("quiet"))]
    else:
        cfg = build_config(options, config_file=config_file)
        setup_logging(cfg.quiet or not main)
        pipeline = pipeline_of(cfg.model.method)
        run_dirs = []
        for one in [_with_seed(cfg, seed) for seed in seeds] if seeds else [cfg]:
            run_dirs += pipeline.run(one) if pipeline is not None else [train_run(one)]
    if main:
        for run_dir in run_dirs:
            click.echo(f"record written to {run_dir}")


@cli.command()
@config_options("ablate")
@click.option(
    "--kd-loss",
    "kd_losses",
    required=True,
    help="Comma-separated distillation losses, one student each (e.g. cross-metric,mse,rkd,stun,none).",
)
@SEEDS_OPTION
def ablate(kd_losses, seeds, **options) -> None:
    """Train one teacher (or reuse --teacher) and one student per KD loss; write an ablation table.
    With --seeds: a teacher and its students per seed, and the table of seed means."""
    from vpr_bench.config import check_setting

    cfg = build_config(options)
    setup_logging(cfg.quiet)
    pipeline = pipeline_of(cfg.model.method)
    if pipeline is None or not hasattr(pipeline, "ablate"):
        raise VPRBenchError(f"--method {cfg.model.method}: not a distillation pipeline (e.g. tscm)")
    losses = [name.strip() for name in kd_losses.split(",") if name.strip()]
    for name in losses:  # each checked as --kd-loss is, before any work
        check_setting("distill.kd_loss", name)
    out = pipeline.ablate(cfg, losses, seeds=seeds)
    click.echo((out / "ablation.md").read_text(), nl=False)
    click.echo(f"ablation table written to {out}")


def official_weights(method: str, spec: str) -> str:
    """The local path of ``--weights official[:FILE]`` for ``method`` (fetched by the method)."""
    from vpr_bench.registry import METHODS

    kind, _, choice = spec.partition(":")
    if kind != "official":
        raise click.BadParameter(f"{spec!r}: expected official or official:FILE", param_hint="--weights")
    fetch = METHODS.get(method).spec.fetch_weights if method in METHODS else None
    if fetch is None:
        raise VPRBenchError(f"--weights official: {method or 'the method'} publishes no official weights")
    return str(fetch(choice or None))


@cli.command("eval")
@config_options("eval")
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
    if sum(map(bool, (checkpoint, untrained, weights, options.get("eval__descriptors")))) > 1:
        raise click.UsageError("--checkpoint, --weights, --untrained and --descriptors exclude each other")
    if options.get("eval__descriptors") and not options.get("model__method"):
        from vpr_bench.results.descriptors import stored_method

        options["model__method"] = stored_method(options["eval__descriptors"])  # the model that made them
    method = options.get("model__method") or ""
    if weights:
        checkpoint = official_weights(method, weights)
    from vpr_bench import distributed

    distributed.init(options.get("eval__device") or "auto")
    main = distributed.is_main()  # under torchrun every rank extracts its share; rank 0 alone records
    if not main and options.get("eval__descriptors"):  # no model runs: rank 0 alone evaluates them
        return
    from vpr_bench.runner import evaluate_run

    pipeline = None if options.get("eval__descriptors") else pipeline_of(method)  # no model runs
    read = None
    if checkpoint and pipeline is None and method:  # the file may decide the variant
        from vpr_bench.checkpoints import read_method_checkpoint
        from vpr_bench.registry import METHODS

        if method in METHODS:
            read = read_method_checkpoint(method, checkpoint)
    cfg = build_config(options, from_file=read.settings if read else None)
    if not main:  # one set of progress bars and log lines: rank 0's
        cfg = dataclasses.replace(cfg, quiet=True)
    setup_logging(cfg.quiet)
    if pipeline is not None:
        run_dir = pipeline.evaluate(
            cfg, checkpoint, query_model or "student", database_model or "teacher", untrained
        )
    elif query_model or database_model:
        raise click.UsageError("--query-model/--database-model apply to pipelines such as tscm")
    else:
        run_dir = evaluate_run(cfg, checkpoint=read or checkpoint, command="eval")
    if main:
        click.echo(f"record written to {run_dir}")
