"""An ablation's table, written beside its runs: ``<out>/<dataset>/<name>/<id>/ablation.{md,csv,tex}``,
rendered as ``vpr-bench compare`` renders (one row per run, or seed means)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from vpr_bench._io import atomic_write_text
from vpr_bench.results.render import render
from vpr_bench.results.store import Record
from vpr_bench.results.table import ABLATION, build_table


def write_ablation_table(
    run_dirs: Sequence[Path], name: str, ablation_id: str, seed_mean: bool = False
) -> Path:
    """The folder holding the table of ``run_dirs`` (finished runs of one dataset), in Markdown, CSV and
    LaTeX; ``seed_mean``: one row per setting, mean ± std over its seeds."""
    if not run_dirs:
        raise ValueError("an ablation needs at least one run")
    records = [Record(run, json.loads((Path(run) / "metrics.json").read_text())) for run in run_dirs]
    columns = ABLATION if not seed_mean else (*ABLATION[:-1], "seeds")
    table = build_table(records, columns=columns, best=False, sort=None, seed_mean=seed_mean)
    out = Path(run_dirs[-1]).parent.parent / name / ablation_id  # <out>/<dataset>/<name>/<id>
    out.mkdir(parents=True, exist_ok=True)
    for suffix, fmt in (("md", "markdown"), ("csv", "csv"), ("tex", "latex")):
        atomic_write_text(out / f"ablation.{suffix}", render(table, fmt))
    return out
