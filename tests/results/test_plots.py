"""Plot commands write PNGs of the requested size; retrieval grids pick failures first when asked."""

import numpy as np
import pytest
from PIL import Image

from tests.results.test_table import A, C, D
from vpr_bench.errors import VPRBenchError
from vpr_bench.results import Record
from vpr_bench.results.plots import choose_queries, cost_accuracy, pr_curves, recall_curves
from vpr_bench.testing import TINY_CLI, run_cli


def png_size(path):
    assert path.stat().st_size > 1000
    with Image.open(path) as image:
        return image.format, image.size


def test_recall_and_cost_plots_have_the_requested_size(tmp_path):
    curved = Record(C.run_dir, {**C.data, "recall_curve": [85.0 + i * 0.5 for i in range(20)]})
    assert png_size(recall_curves([A, curved, D], tmp_path / "r.png", (640, 480))) == ("PNG", (640, 480))
    assert png_size(cost_accuracy([A, C], tmp_path / "c.png", (500, 400))) == ("PNG", (500, 400))


def test_pr_plot_draws_the_runs_with_a_curve_and_names_the_fix_without_one(tmp_path):
    curve = {"recall": [0.0, 0.2, 0.2, 0.5], "precision": [1.0, 1.0, 0.5, 0.6]}
    with_pr = Record(C.run_dir, {**C.data, "curves": {"pr": curve}, "metrics": {"AUC-PR": 0.31}})
    assert png_size(pr_curves([A, with_pr], tmp_path / "pr.png", (640, 480))) == ("PNG", (640, 480))
    with pytest.raises(
        VPRBenchError, match=r"no precision-recall curve in .*`vpr-bench metrics RUN --metrics pr`"
    ):
        pr_curves([A, D], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_failures_come_first_when_asked():
    top1 = np.array([True, False, True, False, True, True])
    picked = choose_queries(top1, 3, failures=True, seed=0)
    assert sorted(picked[:2].tolist()) == [1, 3] and top1[picked[2]]
    assert len(set(choose_queries(top1, 6, failures=False, seed=0).tolist())) == 6


def test_plot_commands_end_to_end(synthetic_root, tmp_path, capsys):
    out = tmp_path / "results"
    dataset = ["--dataset", f"folder:{synthetic_root}", "--out", str(out)]
    code, _, err = run_cli(["eval", "--method", "gem", *dataset, *TINY_CLI], capsys)
    assert code == 0, err
    (run_dir,) = out.glob("*/gem/*")
    grid = tmp_path / "g.png"
    args = ["plot", "retrievals", str(run_dir), "--queries", "3", "--top", "4", "--failures"]
    code, _, err = run_cli([*args, "--output", str(grid), "--size", "600x400"], capsys)
    assert code == 0, err
    assert png_size(grid) == ("PNG", (600, 400))
    for kind in ("recall", "cost"):
        path = tmp_path / f"{kind}.png"
        code, _, err = run_cli(["plot", kind, "--results", str(out), "--output", str(path)], capsys)
        assert code == 0, err
        assert png_size(path) == ("PNG", (800, 600))
    code, _, err = run_cli(["plot", "recall", "--results", str(out), "--output", "x.png", "nope"], capsys)
    assert code == 2 and "no finished run 'nope'" in err
