"""The ``vpr-bench`` command line: it only wires the library together. Commands live by family in
``run.py`` (run, ablate, eval), ``results.py`` (list, compare, plot) and ``datasets.py``; their options
and how options become a ``RunConfig`` in ``_options.py``."""

from __future__ import annotations

import sys

import click

from vpr_bench.cli import datasets, results, run  # noqa: F401  (the commands register on the group)
from vpr_bench.cli._app import cli
from vpr_bench.errors import VPRBenchError

__all__ = ["cli", "main"]


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
