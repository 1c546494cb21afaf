"""Which run a leaderboard row is: validation R@1 by default, test R@1 only when asked (and said); seeds of
different machines never merge; different devices and budgets (lr, weight decay, negatives, pretrained
backbones) are shown and warned about. Records are written as JSON into tmp folders."""

import csv
import io
import json
from pathlib import Path

from vpr_bench.results import load_records
from vpr_bench.results.render import render
from vpr_bench.results.selection import device_of, seed_means
from vpr_bench.results.table import build_table
from vpr_bench.testing import run_cli

CPU = "AMD EPYC 7B13 (16 cores, 16 threads)"
GPU = "NVIDIA H200"
VAL_RULE = "rows: best validation R@1 per setting (trained), most recent (evaluation-only)"


def write_run(root: Path, run: str, test_r1: float, day: int = 1, method: str = "gem", **fields) -> Path:
    """A finished run's folder with its metrics.json; ``val``: a trained run's best validation R@1,
    ``device``: where it ran, ``budget``: budget fields over the defaults (trained runs only)."""
    val, device, budget = fields.pop("val", None), fields.pop("device", CPU), fields.pop("budget", {})
    record = {
        "schema_version": 1,
        "run_id": run,
        "created": f"2026-12-{day:02d}T10:00:00+00:00",
        "method": method,
        "dataset": "synthetic",
        "backbone": "resnet18",
        "preset": "demo",
        "metrics": {"R@1": test_r1, "R@5": test_r1 + 5},
        "cost": {"params": 11e6, "ms_per_image": 2.0 if device == CPU else 0.2, "device": device},
        **fields,
    }
    if val is not None:
        record.update(trained=True, training={"best_val_R@1": val, "epochs": 12})
        record["budget"] = {"max_epochs": 12, "queries_per_epoch": 200, "batch_size": 8, "lr": 1e-3,
                            "weight_decay": 0.0, "negatives": 3, "image_size": [48, 64],
                            "pretrained": {"resnet18": False}, "device": device, **budget}  # fmt: skip
    folder = root / "synthetic" / method / run
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(record))
    return folder


def compare(root: Path, capsys, *options: str) -> tuple[int, str, str]:
    return run_cli(["compare", "--results", str(root), "--format", "markdown", *options], capsys)


def row_of(text: str, method: str) -> str:
    (row,) = [line for line in text.splitlines() if line.startswith(f"| {method} ")]
    return row


def test_a_trained_runs_row_is_its_best_validation_run_and_test_selection_is_said(tmp_path, capsys):
    write_run(tmp_path, "lucky", 70.0, day=1, val=40.0, seed=1)  # best on test
    write_run(tmp_path, "steady", 60.0, day=2, val=50.0, seed=2)  # best on validation
    write_run(tmp_path, "latest", 55.0, day=3, val=30.0, seed=3)  # most recent
    code, out, err = compare(tmp_path, capsys)
    assert code == 0, err
    assert "| steady |" in row_of(out, "gem") and "60.0" in row_of(out, "gem")
    assert f"*{VAL_RULE}*" in out and "selected on test" not in out
    assert "hint: 1 row(s) show one of several seeds; --seed-mean shows mean ± std" in out
    code, out, _ = compare(tmp_path, capsys, "--select", "test")
    assert code == 0 and "| lucky |" in row_of(out, "gem") and "70.0" in row_of(out, "gem")
    assert "*rows: best test R@1 per setting: selected on test" in out
    code, out, _ = compare(tmp_path, capsys, "--select", "recent")
    assert code == 0 and "| latest |" in row_of(out, "gem") and "*rows: most recent run per setting*" in out
    code, out, _ = run_cli(["compare", "--results", str(tmp_path)], capsys)  # the terminal table says it too
    assert code == 0 and VAL_RULE in out.splitlines()


def test_an_evaluation_only_runs_row_is_the_most_recent_one(tmp_path, capsys):
    write_run(tmp_path, "old-better", 80.0, day=1, method="netvlad")
    write_run(tmp_path, "new", 75.0, day=2, method="netvlad")
    write_run(tmp_path, "trained", 50.0, day=3, method="netvlad", val=45.0)  # a setting of its own
    code, out, err = compare(tmp_path, capsys)
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| netvlad ")]
    assert len(rows) == 2 and any("| new |" in r for r in rows) and any("| trained |" in r for r in rows)
    code, _, err = compare(tmp_path, capsys, "--all", "--select", "test")
    assert code == 2 and err.strip() == (
        "error: --select test picks one run per setting and --all shows every run: drop one"
    )


def test_seed_mean_never_merges_a_cpu_run_with_a_gpu_run(tmp_path, capsys):
    for seed, (r1, device) in enumerate([(30.0, CPU), (34.0, CPU), (50.0, GPU)], start=1):
        write_run(tmp_path, f"seed{seed}", r1, day=seed, val=r1 - 5, device=device, seed=seed)
    merged = sorted(seed_means(load_records(tmp_path)), key=device_of)
    assert [(device_of(r), r.get("seeds"), float(r.get("metrics.R@1"))) for r in merged] == [
        (CPU, [1, 2], 32.0),
        (GPU, [3], 50.0),
    ]
    assert float(merged[0].get("cost.ms_per_image")) == 2.0  # ms/image averaged over one machine only
    code, out, err = run_cli(
        ["compare", "--results", str(tmp_path), "--all", "--seed-mean", "--format", "csv"], capsys
    )
    assert code == 0, err
    rows = sorted(csv.DictReader(io.StringIO(out)), key=lambda row: row["device"])
    assert [(row["device"], row["seeds"], row["run"]) for row in rows] == [
        (CPU, "1,2", "2 runs"),
        (GPU, "3", "seed3"),
    ]


def test_rows_from_different_devices_say_so_in_one_line_eval_only_rows_included(tmp_path, capsys):
    write_run(tmp_path, "mine", 40.0, val=35.0, device=CPU)
    write_run(tmp_path, "published", 90.0, method="salad", weights="official salad.ckpt", device=GPU)
    code, out, err = run_cli(["compare", "--results", str(tmp_path)], capsys)
    assert code == 0, err
    warnings = [line for line in out.splitlines() if "different devices" in line]
    assert warnings == [
        f"warning: rows come from different devices ({CPU} vs {GPU}): ms/image, ms/query, memory and "
        "training time are not comparable across them"
    ]
    same = tmp_path / "same"
    write_run(same, "mine", 40.0, val=35.0, device=GPU)
    write_run(same, "published", 90.0, method="salad", device=GPU)
    code, out, _ = run_cli(["compare", "--results", str(same), "--format", "markdown"], capsys)
    assert code == 0 and "different devices" not in out and "device" not in out.splitlines()[0]


def test_old_records_without_a_device_name_load_and_show(tmp_path):
    old = write_run(tmp_path, "old", 40.0, val=35.0)
    data = json.loads((old / "metrics.json").read_text())
    data["cost"]["device"], data["budget"]["pretrained"] = "cpu", False  # as records were before names
    del data["budget"]["weight_decay"], data["budget"]["negatives"]
    (old / "metrics.json").write_text(json.dumps(data))
    write_run(tmp_path, "new", 45.0, day=2, method="netvlad", val=38.0)
    table = build_table(load_records(tmp_path), columns=("method", "R@1", "run"))
    assert device_of(table.rows[0].first) == device_of(table.rows[1].first) == CPU  # the budget's name
    assert table.notes == [VAL_RULE]  # False == {"resnet18": False}; unknown fields are no difference


def test_budget_differences_in_lr_weight_decay_negatives_and_pretrained_are_columns_and_a_warning(tmp_path):
    write_run(tmp_path, "a", 40.0, val=35.0)
    paper = {
        "lr": 1e-5,
        "weight_decay": 1e-3,
        "negatives": 10,
        "pretrained": {"resnet18": True, "vit": False},
    }
    write_run(tmp_path, "b", 45.0, method="tscm-teacher", val=38.0, budget=paper)
    table = build_table(load_records(tmp_path), columns=("method", "R@1", "run"))
    text = render(table, "table", width=None)
    header = text.splitlines()[1].split()
    assert {"lr", "weight", "decay", "negatives", "pretrained"} <= set(header)
    assert "resnet18=True, vit=False" in text
    (warning,) = [line for line in table.notes if line.startswith("warning:")]
    assert warning == (
        "warning: rows were trained with different budgets (lr: 0.001 vs 1e-05; weight decay: 0 vs 0.001; "
        "negatives: 10 vs 3; pretrained: False vs resnet18=True, vit=False): not like for like"
    )


def test_a_variant_of_the_papers_model_keeps_its_own_row_and_shows_it(tmp_path, capsys):
    write_run(tmp_path, "raw", 15.0, day=1, method="tscm-teacher", val=14.0, variant="")
    write_run(
        tmp_path, "balanced", 18.0, day=2, method="tscm-teacher", val=16.0, variant="balance_parts=true"
    )
    code, out, err = compare(tmp_path, capsys)
    assert code == 0, err
    assert any(line.startswith("| method | variant |") for line in out.splitlines())
    rows = [line for line in out.splitlines() if line.startswith("| tscm-teacher ")]
    assert len(rows) == 2 and any("balance_parts=true" in row and "18.0" in row for row in rows)


def test_batch_dependent_rows_are_marked_and_a_batch_of_one_keeps_its_own_row(tmp_path, capsys):
    official = {"batch_dependent": True, "batch_size": 16, "database_and_queries": "separately"}
    alone = {**official, "batch_size": 1, "one_image_at_a_time": True}
    write_run(tmp_path, "official", 60.0, day=1, method="cricavpr", protocol={"batching": official})
    write_run(tmp_path, "alone", 50.0, day=2, method="cricavpr", protocol={"batching": alone})
    code, out, err = compare(tmp_path, capsys)
    assert code == 0, err
    assert len([line for line in out.splitlines() if line.startswith("| cricavpr ")]) == 2
    assert "batch-dependent: cricavpr (batches of 16, database and queries separately)" in out
    assert "batch-dependent: cricavpr (one image at a time)" in out


def test_runs_that_differ_only_in_where_decoded_images_were_kept_are_seeds_of_one_setting(tmp_path):
    configs = [
        {"seed": 1, "data": {"image_size": [48, 64], "image_cache": "auto"}},
        {"seed": 2, "data": {"image_size": [48, 64], "image_cache": "/scratch/cache"}},
        {"seed": 3, "data": {"image_size": [48, 64], "image_cache": "off"}},
        {"seed": 4, "data": {"image_size": [32, 32], "image_cache": "off"}},  # another input: its own row
    ]
    for config in configs:
        seed = config["seed"]
        run_dir = write_run(tmp_path, f"seed{seed}", 30.0 + seed, day=seed, seed=seed)
        (run_dir / "config.json").write_text(json.dumps(config))
    merged = sorted(seed_means(load_records(tmp_path)), key=lambda r: r.get("seeds"))
    assert [r.get("seeds") for r in merged] == [[1, 2, 3], [4]]
