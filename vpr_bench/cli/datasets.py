"""Dataset commands: ``datasets synth``."""

from __future__ import annotations

from pathlib import Path

import click

from vpr_bench.cli._app import cli
from vpr_bench.cli._options import setup_logging
from vpr_bench.errors import VPRBenchError


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

    setup_logging(False)
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
