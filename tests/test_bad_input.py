"""User mistakes found by a sweep of real sessions, each reproduced through the CLI: every one ends in one
line that names the file or option and says what to do, never a traceback or a misleading guess."""

import json
import shutil
from pathlib import Path

import pytest

import vpr_bench
from vpr_bench.results import new_run_dir, write_record
from vpr_bench.testing import TINY_CLI, run_cli

CORRIDOR = ["--dataset", "corridor"]  # ships with the package: 111 queries, 111 database images
HTML = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n"


def one_line(err: str) -> str:
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    return line


def fake_run(out: Path, method: str = "gem", dataset: str = "corridor", curve=(40.0, 60.0, 70.0)) -> Path:
    """A finished run's folder as the store writes it, with a tiny record (no model, no images)."""
    run_dir = new_run_dir(out, dataset, method)
    record = {
        "method": method,
        "dataset": dataset,
        "trained": True,
        "metrics": {"R@1": curve[0], "R@5": curve[-1]},
        "recall_curve": list(curve),
        "cost": {"params": 1e6, "ms_per_image": 2.0},
    }
    write_record(run_dir, {"model": {"method": method}}, record)
    return run_dir


# ---- --out -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["eval", "run"])
def test_out_that_is_a_file_is_named(command, synthetic_root, tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    dataset = CORRIDOR if command == "eval" else ["--dataset", f"folder:{synthetic_root}"]
    code, _, err = run_cli([command, "--method", "gem", *dataset, *TINY_CLI, "--out", str(taken)], capsys)
    assert code == 2
    assert one_line(err) == (
        f"error: --out {taken} is a file, not a folder; give --out a folder (it is created if missing)"
    )
    assert taken.read_text() == "mine\n"


# ---- plot --output -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, magic", [("pdf", b"%PDF"), ("svg", b"<svg"), ("png", b"\x89PNG")])
def test_plot_writes_the_format_its_extension_names(fmt, magic, tmp_path, capsys):
    fake_run(tmp_path / "results")
    figure = tmp_path / f"recall.{fmt}"
    code, _, err = run_cli(
        ["plot", "recall", "--results", str(tmp_path / "results"), "--output", str(figure)], capsys
    )
    assert code == 0, err
    assert magic in figure.read_bytes()[:400]


@pytest.mark.parametrize(
    "args",
    [["recall"], ["cost"], ["retrievals", "some-run"], ["training", "some-run"]],
    ids=["recall", "cost", "retrievals", "training"],
)
def test_plot_refuses_an_extension_it_cannot_write(args, tmp_path, capsys):
    fake_run(tmp_path / "results")
    for name, what in (("t.pgn", "unknown figure format '.pgn'"), ("t", "no extension")):
        figure = tmp_path / name
        code, _, err = run_cli(
            ["plot", *args, "--results", str(tmp_path / "results"), "--output", str(figure)], capsys
        )
        assert code == 2
        assert one_line(err) == f"error: --output {figure}: {what}; end the file name in .png, .pdf, .svg"
        assert not figure.exists()


# ---- weights files that are not weights --------------------------------------------------------------


def test_an_html_page_saved_as_pth_is_called_what_it_is(tmp_path, capsys):
    page = tmp_path / "resnet18.pth"
    page.write_bytes(HTML)
    code, _, err = run_cli(
        ["eval", "--method", "gem", *CORRIDOR, *TINY_CLI, "--checkpoint", str(page)], capsys
    )
    assert code == 2
    line = one_line(err)
    assert line.startswith(
        f"error: {page} is not a PyTorch checkpoint: it is an HTML page (a failed download?"
    )
    assert "weights_only" not in line
    code, _, err = run_cli(
        ["eval", "--method", "gem", *CORRIDOR, *TINY_CLI, "--pretrained-file", str(page)], capsys
    )
    assert code == 2
    line = one_line(err)
    assert line.startswith(f"error: --pretrained-file {page} is not a PyTorch checkpoint: it is an HTML page")
    assert "weights_only" not in line


def test_a_text_file_named_safetensors_is_not_called_a_large_header(tmp_path, capsys):
    text = tmp_path / "model.safetensors"
    text.write_text("Entry not found\n")
    code, _, err = run_cli(
        ["eval", "--method", "gem", *CORRIDOR, *TINY_CLI, "--checkpoint", str(text)], capsys
    )
    assert code == 2
    assert one_line(err) == (
        f"error: {text} is not a safetensors file: it is a text file starting 'Entry not found' "
        "(a failed download?)"
    )


def test_checkpoint_on_a_folder_of_runs_asks_for_one_run(tmp_path, capsys):
    runs = [fake_run(tmp_path / "results") for _ in range(3)]
    newest, second = sorted(runs, key=lambda run: run.name, reverse=True)[:2]  # ids start with their time
    folder = tmp_path / "results" / "corridor" / "gem"
    code, _, err = run_cli(
        ["eval", "--method", "gem", *CORRIDOR, *TINY_CLI, "--checkpoint", str(folder)], capsys
    )
    assert code == 2
    assert one_line(err) == (
        f"error: {folder} is a folder of runs, not a run: give one of them, "
        f"e.g. {newest} or {second} (3 in all)"
    )


# ---- --resume ----------------------------------------------------------------------------------------


def test_resume_of_a_mistyped_folder_says_it_does_not_exist(tmp_path, capsys):
    typo = tmp_path / "results" / "corridor" / "gem" / "20260101-000000-abcdef"
    code, _, err = run_cli(["run", "--resume", str(typo)], capsys)
    assert code == 2
    assert one_line(err).startswith(f"error: --resume {typo}: this folder does not exist")
    assert "config.json" not in err


def test_resume_of_a_run_that_died_before_its_first_checkpoint_says_start_again(tmp_path, capsys):
    run_dir = tmp_path / "results" / "synthetic" / "gem" / "20260101-000000-abcdef"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"model": {"method": "gem"}}))
    (run_dir / "run.log").write_text("… ERROR vpr_bench: failed: killed\n")
    code, _, err = run_cli(["run", "--resume", str(run_dir)], capsys)
    assert code == 2
    line = one_line(err)
    assert "stopped before its first checkpoint" in line and "start it again without --resume" in line
    assert f"--config {run_dir / 'config.json'}" in line
    assert "this version" not in line


# ---- compare / plot: folders that are not there ------------------------------------------------------


def test_compare_names_a_results_path_that_is_missing_or_a_file(tmp_path, capsys):
    missing = tmp_path / "reslts"
    code, _, err = run_cli(["compare", "--results", str(missing)], capsys)
    assert code == 2
    assert (
        one_line(err) == f"error: --results {missing} does not exist (give the folder runs were written to)"
    )
    a_file = tmp_path / "table.md"
    a_file.write_text("| |\n")
    code, _, err = run_cli(["compare", "--results", str(a_file)], capsys)
    assert code == 2
    assert one_line(err) == f"error: --results {a_file} is a file, not a folder of runs"


def test_plot_retrievals_of_a_missing_folder_says_it_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "results" / "corridor" / "gem" / "gone"
    code, _, err = run_cli(["plot", "retrievals", str(missing), "--output", str(tmp_path / "g.png")], capsys)
    assert code == 2
    assert one_line(err) == (
        f"error: plot retrievals: {missing} does not exist (give a run folder, or a run id under --results)"
    )


# ---- --backbone --------------------------------------------------------------------------------------


def test_a_mistyped_backbone_suggests_the_model_meant(capsys):
    code, _, err = run_cli(
        ["eval", "--method", "gem", *CORRIDOR, *TINY_CLI, "--backbone", "resnet_18"], capsys
    )
    assert code == 2
    assert "error: --backbone 'resnet_18' is not a timm model (similar: resnet18, " in one_line(err)


# ---- --recall-at beyond the database -----------------------------------------------------------------


def test_recall_at_beyond_the_database_is_warned_and_noted(tmp_path, capsys):
    args = ["eval", "--method", "gem", *CORRIDOR, *TINY_CLI, "--recall-at", "1,500", "--out", str(tmp_path)]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert "--recall-at 500: the database holds only 111 images, so R@500 = " in err
    (metrics,) = tmp_path.glob("corridor/gem/*/metrics.json")
    record = json.loads(metrics.read_text())
    assert record["protocol"]["recall_at_beyond_database"] == [500]
    assert record["metrics"]["R@500"] == 100.0  # every corridor query has a positive


# ---- a failed run's folder says why ------------------------------------------------------------------


def test_a_failed_run_writes_its_error_into_run_log(tmp_path, capsys):
    root = tmp_path / "corridor"
    shutil.copytree(Path(vpr_bench.__file__).parent / "data" / "corridor", root)
    victim = root / "ref" / "0000050.jpg"
    victim.write_bytes(victim.read_bytes()[:100])  # truncated: found while describing the database
    out = tmp_path / "results"
    args = ["eval", "--method", "gem", *CORRIDOR, "--data-root", str(root), *TINY_CLI, "--out", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    line = one_line(err)
    assert victim.name in line
    (run_dir,) = out.glob("corridor/gem/*")
    log = (run_dir / "run.log").read_text()
    assert f"ERROR vpr_bench: failed: {line.removeprefix('error: ')}" in log
    assert "Traceback" not in log  # a user mistake: its one line, as on screen


def test_a_bug_leaves_its_traceback_in_run_log(tmp_path, capsys, monkeypatch):
    from vpr_bench.evaluation import engine

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the search")

    monkeypatch.setattr(engine, "search_split", broken)
    out = tmp_path / "results"
    with pytest.raises(RuntimeError, match="a bug in the search"):
        run_cli(["eval", "--method", "gem", *CORRIDOR, *TINY_CLI, "--out", str(out)], capsys)
    (run_dir,) = out.glob("corridor/gem/*")
    log = (run_dir / "run.log").read_text()
    assert "failed: RuntimeError: a bug in the search" in log and "Traceback" in log
