"""Result commands: ``list`` (what is registered), ``compare`` (leaderboards), ``plot``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from vpr_bench.cli._app import cli
from vpr_bench.cli._options import parse_size, setup_logging
from vpr_bench.errors import VPRBenchError


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
    published = [e for e in METHODS.entries() if e.spec.published is not None]
    if published:
        click.echo("published models (vpr-bench eval --method M --checkpoint FILE | --weights official):")
        for e in published:
            p = e.spec.published
            size = f"{p.input_size[0]}×{p.input_size[1]}" if p.input_size else "native"
            recall = "; ".join(f"{b} R@1 {v:g} ({src})" for b, v, src in p.recall_at_1) or "—"
            click.echo(
                f"  {e.name}: {p.descriptor_dim}-d, input {size}, licence {p.licence}; published {recall}"
            )
        click.echo("")
    statuses = plugin_statuses()
    click.echo("plugins:" if statuses else "plugins: none installed")
    for s in statuses:
        state = "ok" if s.ok else f"FAILED: {s.error}"
        click.echo(f"  {s.name} ({s.distribution}, {s.target}): {state}")


def _show_method(entry) -> None:
    from vpr_bench.options import describe

    click.echo(f"{entry.name}: {entry.description}  [{entry.source}]")
    rows = describe(entry.spec.options)
    click.echo("options (--model-option KEY=VALUE):" if rows else "options: none")
    width = max((len(f"{name}={default}") for name, default, _ in rows), default=0)
    for name, default, help_ in rows:
        click.echo(f"  {f'{name}={default}'.ljust(width)}  {help_}")
    honoured = entry.spec.descriptor_dim
    hint = entry.spec.descriptor_dim_hint
    click.echo(f"--descriptor-dim: {'honoured' if honoured else 'refused (' + hint + ')'}")
    for preset, values in sorted(entry.spec.presets.items()):
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
@click.option(
    "--seed-mean",
    is_flag=True,
    help="Merge runs that differ only in their seed into one row: mean ± std over the seeds.",
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
def compare(datasets_, methods, all_runs, seed_mean, sort, fmt, output, results_dir) -> None:
    """Leaderboard of recorded runs: one row per method (best run), one column group per dataset."""
    from vpr_bench._io import atomic_write_text
    from vpr_bench.results import load_records
    from vpr_bench.results.render import render
    from vpr_bench.results.table import build_table

    setup_logging(False)
    records = [
        r
        for r in load_records(results_folder(results_dir))
        if (not datasets_ or r.get("dataset") in datasets_) and (not methods or r.get("method") in methods)
    ]
    if not records:
        raise VPRBenchError(
            f"no result records in {results_dir}"
            + (f" for dataset {', '.join(datasets_)}" if datasets_ else "")
            + (f" for method {', '.join(methods)}" if methods else "")
        )
    table = build_table(records, best=not all_runs, sort=sort, seed_mean=seed_mean)
    text = render(table, fmt, width=None if output else 80)
    if output:
        atomic_write_text(output, text)
        click.echo(f"{fmt} written to {output}")
    else:
        click.echo(text, nl=False)


def results_folder(results_dir: str) -> str:
    """``--results``, refused in one line when it is not a folder (a typo would read as "no records")."""
    if not Path(results_dir).exists():
        raise VPRBenchError(f"--results {results_dir} does not exist (give the folder runs were written to)")
    if not Path(results_dir).is_dir():
        raise VPRBenchError(f"--results {results_dir} is a file, not a folder of runs")
    return results_dir


def run_folder(run: str, command: str) -> Path | None:
    """RUN given as a folder: its path; as a run id (no path separator): None, to look up under
    --results. A path that is not a folder is refused, naming it."""
    path = Path(run)
    if path.is_dir():
        return path
    if "/" in run or os.sep in run or run.startswith("."):
        what = "is a file, not a run folder" if path.exists() else "does not exist"
        raise VPRBenchError(f"{command}: {run} {what} (give a run folder, or a run id under --results)")
    return None


def _select_runs(results_dir: str, datasets_: tuple, runs: tuple, command: str = "plot") -> list:
    """Runs named by id or folder, else the best run per method on the given datasets."""
    from vpr_bench.results import load_records
    from vpr_bench.results.table import select

    for run in runs:
        run_folder(run, command)
    records = [
        r for r in load_records(results_folder(results_dir)) if not datasets_ or r.get("dataset") in datasets_
    ]
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
    """Figures for papers: Recall@N curves, retrieval grids, accuracy vs cost, training curves (PNG, PDF
    or SVG)."""


def _figure_output(ctx, param, value):
    from vpr_bench.results.plots import figure_format

    if value is not None:
        figure_format(value)  # before any work: an extension we cannot write is refused, naming it
    return value


FIGURE_OUTPUT = click.option(
    "--output",
    required=True,
    type=click.Path(),
    callback=_figure_output,
    help="Figure to write; its extension picks the format: .png, .pdf or .svg.",
)
PLOT_OPTIONS = [
    click.option("--dataset", "datasets_", multiple=True, help="Only runs on this dataset (repeatable)."),
    click.option("--results", "results_dir", default="results", show_default=True, type=click.Path()),
    FIGURE_OUTPUT,
    click.option(
        "--size",
        callback=lambda c, p, v: parse_size(v, "WxH", "800x600"),
        help="WxH in pixels [default: 800x600].",
    ),
]


def _plot_runs(draw, datasets_, results_dir, output, size, runs) -> None:
    setup_logging(False)
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
@FIGURE_OUTPUT
@click.option(
    "--size",
    callback=lambda c, p, v: parse_size(v, "WxH", "800x600"),
    help="WxH in pixels [default: from the grid].",
)
def plot_retrievals(run, queries, top, failures, seed, results_dir, output, size) -> None:
    """RUN's queries and their top matches (green = correct, red = wrong) with distances."""
    from vpr_bench.results.plots import retrieval_grid

    setup_logging(False)
    run_dir = run_folder(run, "plot retrievals") or _select_runs(results_dir, (), (run,))[0].run_dir
    path = retrieval_grid(run_dir, output, queries, top, failures, seed, size)
    click.echo(f"written {path}")


@plot.command("training")
@click.argument("runs", nargs=-1, required=True)
@click.option("--results", "results_dir", default="results", show_default=True, type=click.Path())
@FIGURE_OUTPUT
@click.option(
    "--size",
    callback=lambda c, p, v: parse_size(v, "WxH", "1000x450"),
    help="WxH in pixels [default: 1000x450].",
)
def plot_training(runs, results_dir, output, size) -> None:
    """Training loss and validation R@1 per epoch of RUNS (run folders or run ids under --results), also
    of runs still training."""
    from vpr_bench.results.plots import training_curves

    setup_logging(False)
    folders = []
    for run in runs:
        folder = run_folder(run, "plot training")
        found = [folder] if folder else sorted(Path(results_folder(results_dir)).glob(f"*/*/{run}"))
        if not found or not found[0].is_dir():
            raise VPRBenchError(
                f"plot training: no run {run!r} (neither a folder nor a run id in {results_dir})"
            )
        folders.append(found[0])
    path = training_curves(folders, output, size or (1000, 450))
    click.echo(f"written {path}")
