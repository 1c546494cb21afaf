"""Result commands: ``list`` (what is registered), ``compare`` (leaderboards), ``metrics`` (recompute a
run's metrics), ``plot``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from vpr_bench.cli._app import cli
from vpr_bench.cli._options import parse_size, setup_logging
from vpr_bench.errors import VPRBenchError
from vpr_bench.results.selection import RULES


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
            click.echo(f"  {e.name}: {p.descriptor_dim}-d, input {size}, licence {p.licence}")
            lines = p.figure_lines()
            click.echo("    published R@1/R@5 (%; †: quoted by others):" if lines else "    published: —")
            for line in lines:
                click.echo(f"      {line}")
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
    for line in entry.spec.training_lines():  # trainable, and which parts train (MethodSpec)
        click.echo(line)
    for preset, values in sorted(entry.spec.presets.items()):
        click.echo(f"preset {preset}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


@cli.command()
@click.option("--dataset", "datasets_", multiple=True, help="Only runs on this dataset (repeatable).")
@click.option("--method", "methods", multiple=True, help="Only runs of this method (repeatable).")
@click.option(
    "--all/--best",
    "all_runs",
    default=False,
    help="Every run, or one run per setting, chosen by --select [default: --best].",
)
@click.option(
    "--select",
    "rule",
    type=click.Choice(list(RULES)),
    help="Which run is a setting's row: val = best validation R@1 (trained runs), most recent "
    "(evaluation-only runs); recent = most recent; test = best test R@1, marked 'selected on test' "
    "(optimistic) [default: val].",
)
@click.option(
    "--seed-mean",
    is_flag=True,
    help="Merge runs that differ only in their seed (on one machine) into one row: mean ± std over the "
    "seeds.",
)
@click.option("--sort", help="Column to sort by, best first [default: --metric's, else R@1].")
@click.option(
    "--metric",
    help="Add this metric's column and rank by it, best first: any metric the records hold (auc_pr, EP, "
    "mAP@5, MRR@20, R@100P, …; `vpr-bench metrics RUN` adds missing ones).",
)
@click.option(
    "--breakdown",
    is_flag=True,
    help="Add a column per condition of the queries (MSLS's subtasks s2w, w2s, …) of --metric, else R@1.",
)
@click.option(
    "--published",
    is_flag=True,
    help="Add the R@1/R@5 a published model's authors report and the difference (measured − published), "
    "for rows of its official file under the same protocol; other rows say what the figure needs.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "csv", "latex", "json"]),
    default="table",
    show_default=True,
)
@click.option("--output", type=click.Path(), help="Write to this file instead of the terminal.")
@click.option("--results", "results_dir", default="results", show_default=True, type=click.Path())
def compare(
    datasets_,
    methods,
    all_runs,
    rule,
    seed_mean,
    sort,
    metric,
    breakdown,
    published,
    fmt,
    output,
    results_dir,
) -> None:
    """Leaderboard of recorded runs: one row per setting (the run --select picks; the rule is printed
    under the table), one column group per dataset."""
    from vpr_bench._io import atomic_write_text
    from vpr_bench.results import load_records
    from vpr_bench.results.published import published_notes, with_published
    from vpr_bench.results.render import render
    from vpr_bench.results.table import COMPARE, COMPARE_PUBLISHED, build_table

    setup_logging(False)
    if all_runs and rule:
        raise VPRBenchError(f"--select {rule} picks one run per setting and --all shows every run: drop one")
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
    if published:
        records = with_published(records, published_figures())
    table = build_table(
        records,
        columns=COMPARE_PUBLISHED if published else COMPARE,
        best=not all_runs,
        sort=sort or (None if metric else "R@1"),
        seed_mean=seed_mean,
        rule=rule or "val",
        metric=metric,
        breakdown=breakdown,
    )
    table.notes += published_notes(table.rows) if published else []
    text = render(table, fmt, width=None if output else 80)
    if output:
        atomic_write_text(output, text)
        click.echo(f"{fmt} written to {output}")
    else:
        click.echo(text, nl=False)


def published_figures() -> dict:
    """Each registered method's published figures (``MethodSpec.published``), by method name."""
    from vpr_bench.registry import METHODS

    return {e.name: e.spec.published.all_figures() for e in METHODS.entries() if e.spec.published}


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
    from vpr_bench.results.selection import select

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


def run_dirs(runs: tuple[str, ...], results_dir: str, command: str) -> list[Path]:
    """Each RUN as a folder: given as one, or found by its id under --results (``*/*/<id>``)."""
    folders = []
    for run in runs:
        folder = run_folder(run, command)
        found = [folder] if folder else sorted(Path(results_folder(results_dir)).glob(f"*/*/{run}"))
        if not found or not found[0].is_dir():
            raise VPRBenchError(f"{command}: no run {run!r} (neither a folder nor a run id in {results_dir})")
        folders.append(found[0])
    return folders


@cli.command("metrics")
@click.argument("runs", nargs=-1, required=True)
@click.option(
    "--metrics",
    "names",
    default="all",
    show_default=True,
    metavar="NAME,NAME|all",
    help="Metrics to recompute (see `vpr-bench list`).",
)
@click.option("--data-root", help="Where the run's dataset is now [default: as its config.json says].")
@click.option("--results", "results_dir", default="results", show_default=True, type=click.Path())
def metrics_(runs, names, data_root, results_dir) -> None:
    """Recompute metrics of finished RUNS (folders or run ids) from their predictions.npz and the split's
    ground truth, without extracting anything, and add them to each run's metrics.json (atomically)."""
    from vpr_bench.config.sections import parse_names
    from vpr_bench.results.rescore import rescore

    setup_logging(False)
    for folder in run_dirs(runs, results_dir, "metrics"):
        done = rescore(folder, parse_names(names), data_root)
        click.echo(f"{folder}: added {', '.join(done.added) or 'none'}; unchanged {len(done.kept)}")
        for name, before, now in done.changed:
            click.echo(f"  {name}: {before:g} recorded, {now:g} recomputed")


@cli.group()
def plot() -> None:
    """Figures for papers: Recall@N and precision-recall curves, retrieval grids, accuracy vs cost,
    training curves (PNG, PDF or SVG)."""


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


@plot.command("pr")
@plot_options
@click.argument("runs", nargs=-1)
def plot_pr(datasets_, results_dir, output, size, runs) -> None:
    """Precision-recall curves of the top-1 match of RUNS (ids or folders), or of the best run per method
    (runs evaluated with --metrics pr or all, or given it by `vpr-bench metrics`)."""
    from vpr_bench.results.plots import pr_curves

    _plot_runs(pr_curves, datasets_, results_dir, output, size, runs)


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
    path = training_curves(run_dirs(runs, results_dir, "plot training"), output, size or (1000, 450))
    click.echo(f"written {path}")
