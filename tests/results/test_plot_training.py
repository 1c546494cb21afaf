"""`vpr-bench plot training`: loss and validation R@1 per epoch of several runs, from training.csv or
(older runs) the record's training.history; runs still training too; a clear error for eval-only runs."""

import json

import pytest
from PIL import Image

from vpr_bench.results import plots
from vpr_bench.testing import run_cli

HISTORY = [
    {"epoch": 1, "loss": 0.3, "val_R@1": 10.0, "lr": 1e-3, "seconds": 2.0},
    {"epoch": 2, "loss": 0.2, "val_R@1": 25.0, "lr": 9e-4, "seconds": 2.0},
    {"epoch": 3, "loss": 0.1, "val_R@1": 20.0, "lr": 8e-4, "seconds": 2.0},
]
CSV = "epoch,loss,val_R@1,val_R@5,lr,seconds\n1,0.9,5.0,9.0,0.001,1.0\n2,0.7,15.0,30.0,0.0009,1.0\n"


def make_run(root, method, run_id, record=None, csv=None, config=None):
    run_dir = root / "synthetic" / method / run_id
    run_dir.mkdir(parents=True)
    if record is not None:
        data = {"run_id": run_id, "method": method, "dataset": "synthetic", "metrics": {"R@1": 1.0}, **record}
        (run_dir / "metrics.json").write_text(json.dumps(data))
    if csv is not None:
        (run_dir / "training.csv").write_text(csv)
    (run_dir / "config.json").write_text(json.dumps(config or {"model": {"method": method}}))
    return run_dir


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "results"
    return root, {
        # a finished run with training.csv (read before the record's history, which differs here)
        "csv": make_run(root, "gem", "20260101-000000-aaaaaa", {"training": {"history": HISTORY}}, CSV),
        # a run made before training.csv existed: its record's history
        "old": make_run(
            root,
            "tscm-student",
            "20260101-000000-bbbbbb",
            {"training": {"history": HISTORY}, "distillation": {"kd_loss": "rkd"}},
        ),
        # still training: no record yet, named from its config.json
        "live": make_run(
            root,
            "tscm-student",
            "20260101-000000-cccccc",
            csv=CSV,
            config={"model": {"method": "tscm-student"}, "distill": {"teacher": "t", "kd_loss": "mse"}},
        ),
        "eval": make_run(root, "gem", "20260101-000000-dddddd", {"command": "eval"}),
    }


def test_two_panels_one_labelled_line_per_run(runs, tmp_path, monkeypatch):
    _, run_dirs = runs
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, output: figures.append(fig) or save(fig, output))
    plots.training_curves([run_dirs["csv"], run_dirs["old"], run_dirs["live"]], tmp_path / "t.png")
    loss_ax, recall_ax = figures[0].axes
    labels = [line.get_label() for line in recall_ax.get_lines()]
    assert labels == [
        "gem · aaaaaa",
        "tscm-student (rkd) · bbbbbb",
        "tscm-student (mse) · cccccc (unfinished)",
    ]
    assert [t.get_text() for t in recall_ax.get_legend().get_texts()] == labels
    csv_loss, old_loss, _ = (list(line.get_ydata()) for line in loss_ax.get_lines())
    assert csv_loss == [0.9, 0.7] and old_loss == [0.3, 0.2, 0.1]  # the CSV first, else the record
    assert list(recall_ax.get_lines()[1].get_ydata()) == [10.0, 25.0, 20.0]
    assert list(recall_ax.get_lines()[0].get_xdata()) == [1, 2]
    assert (loss_ax.get_ylabel(), recall_ax.get_ylabel()) == ("training loss", "Recall@1 (%)")


def test_the_command_takes_ids_and_folders_and_writes_a_png(runs, tmp_path, capsys):
    root, run_dirs = runs
    output = tmp_path / "training.png"
    args = ["plot", "training", "20260101-000000-aaaaaa", str(run_dirs["old"]), "--results", str(root)]
    code, out, err = run_cli([*args, "--output", str(output), "--size", "900x400"], capsys)
    assert code == 0, err
    assert f"written {output}" in out
    with Image.open(output) as image:
        assert (image.format, image.size) == ("PNG", (900, 400))


@pytest.mark.parametrize(
    "run, message",
    [
        ("20260101-000000-dddddd", "20260101-000000-dddddd has no training history (no training.csv"),
        ("nope", "error: plot training: no run 'nope' (neither a folder nor a run id in "),
    ],
)
def test_runs_without_history_fail_in_one_line(run, message, runs, tmp_path, capsys):
    root, _ = runs
    args = ["plot", "training", run, "--results", str(root), "--output", str(tmp_path / "x.png")]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_output_and_a_run_are_required(runs, capsys):
    code, _, err = run_cli(["plot", "training", "--output", "x.png"], capsys)
    assert code == 2 and "Missing argument 'RUNS...'" in err
    code, _, err = run_cli(["plot", "training", "20260101-000000-aaaaaa"], capsys)
    assert code == 2 and "--output" in err
