"""The ``vpr-bench`` command group; command families register on it (``run``, ``results``,
``datasets``)."""

from __future__ import annotations

import click

from vpr_bench import __version__, load_all


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vpr-bench")
def cli() -> None:
    """vpr-bench: train, evaluate and compare visual place recognition methods."""
    load_all()  # the built-ins, then the plugins: the one place the registries are filled
