"""Leaderboard rendering on hand-made records: exact CSV/Markdown, LaTeX structure, groups, fitting."""

import json
import logging
import re
from pathlib import Path

import pytest

from vpr_bench.errors import ConfigError
from vpr_bench.results import load_records
from vpr_bench.results.render import render
from vpr_bench.results.store import Record
from vpr_bench.results.table import COMPARE, build_table


def record(run, method, dataset, r1, params=None, kd=None, created="2026-11-01T10:00:00+00:00", **cost):
    data = {
        "schema_version": 1,
        "run_id": run,
        "created": created,
        "method": method,
        "dataset": dataset,
        "plugin": "built-in",
        "backbone": "resnet50",
        "preset": "paper",
        "metrics": {"R@1": r1, "R@5": r1 + 5, "R@10": r1 + 8, "R@20": r1 + 10},
        "cost": {"params": params, **cost},
    }
    if kd:
        data["distillation"] = {"kd_loss": kd}
    return Record(Path("/results") / run, data)


A = record("a", "gem", "pitts30k", 80.0, 11.2e6, ms_per_image=1.5)
B = record("b", "gem", "pitts30k", 82.5, 11.2e6, created="2026-11-02T10:00:00+00:00", ms_per_image=1.5)
C = record("c", "tscm-student", "pitts30k", 85.0, 12.7e6, kd="cross-metric", ms_per_image=1.3)
D = record("d", "gem", "tokyo247", 60.0, 11.2e6)
SMALL = ("method", "kd_loss", "R@1", "params_M", "run")


def test_csv_exact_best_run_per_method():
    table = build_table([A, B, C], columns=SMALL)
    assert render(table, "csv") == (
        "method,kd_loss,R@1,params_M,run\ntscm-student,cross-metric,85.0,12.7,c\ngem,,82.5,11.2,b\n"
    )


def test_markdown_exact_with_best_values_in_bold():
    table = build_table([A, B, C], columns=SMALL)
    assert render(table, "markdown") == (
        "| method | KD loss | R@1 | params (M) | run id |\n"
        "|---|---|---:|---:|---|\n"
        "| tscm-student | cross-metric | **85.0** | 12.7 | c |\n"
        "| gem | — | 82.5 | **11.2** | b |\n"
        "\n"
        "*rows: best validation R@1 per setting (trained), most recent (evaluation-only)*\n"
    )


def test_all_runs_and_sorting_by_a_min_better_column():
    table = build_table([A, B, C], columns=("method", "ms_image", "run"), best=False, sort="ms_image")
    assert render(table, "csv").splitlines()[1:] == ["tscm-student,1.3,c", "gem,1.5,a", "gem,1.5,b"]
    with pytest.raises(ConfigError, match="--sort 'speed' is not a column"):
        build_table([A], sort="speed")


def test_several_datasets_become_column_groups():
    table = build_table([A, B, C, D], columns=("method", "R@1", "R@5"))
    assert render(table, "csv") == (
        "method,pitts30k/R@1,pitts30k/R@5,tokyo247/R@1,tokyo247/R@5\n"
        "tscm-student,85.0,90.0,,\n"
        "gem,82.5,87.5,60.0,65.0\n"
    )
    text = render(table, "table")
    assert re.search(r"-+ pitts30k -+\s+-+ tokyo247 -+", text.splitlines()[0])
    assert json.loads(render(table, "json"))[1] == {
        "method": "gem",
        "pitts30k/R@1": 82.5,
        "pitts30k/R@5": 87.5,
        "tokyo247/R@1": 60.0,
        "tokyo247/R@5": 65.0,
    }


def test_terminal_table_fits_80_columns_and_marks_the_best():
    table = build_table([A, B, C, D], columns=COMPARE)
    text = render(table, "table", width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "method" in text and "R@1" in text and "85.0*" in text
    assert "run id" in render(table, "table", width=None)  # nothing dropped without a width


def latex_rows(text: str) -> tuple[str, list[str]]:
    """A tiny checker: one tabular with booktabs rules; returns (column spec, body lines)."""
    assert text.count("{") == text.count("}")
    lines = [line for line in text.strip().splitlines() if not line.startswith("% ")]  # notes: comments
    spec = re.fullmatch(r"\\begin\{tabular\}\{([lcr]+)\}", lines[0]).group(1)
    assert lines[1] == "\\toprule" and lines[-2] == "\\bottomrule" and lines[-1] == "\\end{tabular}"
    assert lines.count("\\midrule") == 1
    body = [line for line in lines[2:-2] if line != "\\midrule" and not line.startswith("\\cmidrule")]
    for line in body:
        assert line.endswith("\\\\")
        spans = sum(int(n) for n in re.findall(r"\\multicolumn\{(\d+)\}", line))
        cells = line.count("&") + 1 + spans - len(re.findall(r"\\multicolumn", line))
        assert cells == len(spec), line
    return spec, body


def test_latex_is_a_booktabs_tabular_with_escaped_names():
    odd = record("e", "my_method%", "pitts30k", 70.0, 1e6)
    spec, body = latex_rows(render(build_table([A, C, D, odd], columns=("method", "R@1", "R@5")), "latex"))
    assert spec == "lrrrr"
    assert body[0].startswith(" & \\multicolumn{2}{c}{pitts30k} & \\multicolumn{2}{c}{tokyo247}")
    assert any("my\\_method\\%" in line for line in body)
    assert any("\\textbf{85.0}" in line for line in body)
    latex = render(build_table([A, C], rule="test"), "latex")
    assert latex.splitlines()[-1].startswith("% rows: best test R@1 per setting: selected on test")


def test_records_from_an_older_schema_show_dashes():
    old = Record(Path("/results/old"), {"method": "netvlad", "dataset": "pitts30k", "metrics": {"R@1": 50.0}})
    table = build_table([old, A], columns=("method", "R@1", "gflops", "params_M"))
    assert render(table, "csv").splitlines()[2] == "netvlad,50.0,,"
    assert "| netvlad | 50.0 | — | — |" in render(table, "markdown")


def test_partial_and_corrupt_records_are_skipped_with_a_warning(tmp_path, caplog):
    for name, text in (("partial", '{"method": "gem"}'), ("corrupt", '{"metrics": {'), ("list", "[1, 2]")):
        (tmp_path / "d" / "gem" / name).mkdir(parents=True)
        (tmp_path / "d" / "gem" / name / "metrics.json").write_text(text)
    (tmp_path / "d" / "gem" / "ok").mkdir()
    (tmp_path / "d" / "gem" / "ok" / "metrics.json").write_text('{"metrics": {"R@1": 1.0}, "method": "gem"}')
    with caplog.at_level(logging.WARNING):
        records = load_records(tmp_path)
    assert [r.run_dir.name for r in records] == ["ok"]
    for name in ("partial", "corrupt", "list"):
        assert str(tmp_path / "d" / "gem" / name / "metrics.json") in caplog.text
    assert "gem" in render(build_table(records), "table")


def trained(run, method, r1, seed=1, dataset="synthetic", protocol=None, **budget):
    data = record(run, method, dataset, r1, 1e6).data
    data.update(trained=True, seed=seed)
    data["budget"] = {"max_epochs": 12, "epochs": 12, "queries_per_epoch": 200, "batch_size": 8,
                      "image_size": [48, 64], "pretrained": False, "device": "cpu", **budget}  # fmt: skip
    if protocol:
        data["protocol"] = {"name": protocol}
    return Record(Path("/nowhere") / run, data)


def test_budget_columns_appear_where_rows_differ_with_a_warning():
    rows = [trained("a", "gem", 30.0, max_epochs=30, epochs=30), trained("b", "tscm-teacher", 20.0)]
    text = render(build_table(rows, columns=("method", "R@1", "run")), "table", width=None)
    header = text.splitlines()[1]
    assert "max epochs" in header and "epochs" in header and "device" not in header
    assert text.splitlines()[-1].startswith("warning: rows were trained with different budgets")
    assert "max epochs: 12 vs 30" in text
    same = [trained("a", "gem", 30.0), trained("b", "tscm-teacher", 20.0)]
    text = render(build_table(same, columns=("method", "R@1", "run")), "table", width=None)
    assert "warning" not in text and "max epochs" not in text


def test_seed_mean_merges_runs_that_differ_only_in_their_seed():
    rows = [trained("a", "gem", 30.0, seed=1), trained("b", "gem", 34.0, seed=2),
            trained("c", "gem", 32.0, seed=3), trained("d", "netvlad", 40.0, seed=1)]  # fmt: skip
    table = build_table(rows, columns=("method", "R@1", "run"), seed_mean=True)
    assert render(table, "csv").splitlines() == [
        "method,R@1,run,seeds",
        "netvlad,40.0,d,1",
        "gem,32.0 ± 2.0 (n=3),3 runs,\"1,2,3\"",
    ]
    assert "32.0 ± 2.0" in render(table, "markdown")
    assert json.loads(render(table, "json"))[1]["R@1"] == {"mean": 32.0, "std": 2.0, "n": 3}


def test_two_protocols_of_one_dataset_never_share_a_column():
    rows = [trained("a", "gem", 30.0, dataset="msls", protocol="msls-val"),
            trained("b", "netvlad", 40.0, dataset="msls", protocol="msls-dvg-val")]  # fmt: skip
    table = build_table(rows, columns=("method", "R@1"))
    assert table.datasets == ["msls [msls-dvg-val]", "msls [msls-val]"]
    assert render(table, "csv").splitlines()[0] == "method,msls [msls-dvg-val]/R@1,msls [msls-val]/R@1"
