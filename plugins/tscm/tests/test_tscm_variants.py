"""Deviations from the paper's model are visible where results are read: a record names the options that
make its model differ (``variant``), the paper preset and the release's files keep the raw concatenation,
and a release file refuses an option that contradicts it."""

import json
from pathlib import Path

import pytest
from tscm.release import RELEASE_SETTINGS

from vpr_bench.api import resolve_config as resolve
from vpr_bench.testing import run_cli


def test_the_paper_preset_and_the_release_keep_the_raw_concatenation():
    assert resolve("paper", {"model.method": "tscm"}).model.options.get("balance_parts", False) is False
    release = resolve("paper", {"model.method": "tscm-teacher"}, from_file=dict(RELEASE_SETTINGS))
    assert release.model.options["balance_parts"] is False
    assert resolve("demo", {"model.method": "tscm"}).model.options["balance_parts"] is True


@pytest.mark.parametrize(
    "options, variant",
    [([], ""), (["--model-option", "balance_parts=true"], "balance_parts=true"),
     (["--model-option", "loupe_init=kmeans"], "loupe_init=kmeans")],
)  # fmt: skip
def test_a_record_names_its_variant(options, variant, tiny_cli, tmp_path, capsys):
    args = ["eval", "--method", "tscm-teacher", "--dataset", "corridor", "--untrained", "--preset", "paper"]
    code, out, err = run_cli([*args, *tiny_cli, *options, "--out", str(tmp_path)], capsys)
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1].split("record written to ")[1])
    assert json.loads((run_dir / "metrics.json").read_text())["variant"] == variant


def test_a_release_file_refuses_balance_parts(tmp_path, capsys):
    from test_tscm_release import write_release_checkpoint

    path = write_release_checkpoint(tmp_path / "ckpt_best.pth.tar", "teacher", True)
    args = ["eval", "--method", "tscm-teacher", "--dataset", "corridor", "--checkpoint", str(path)]
    code, _, err = run_cli([*args, "--model-option", "balance_parts=true", "--out", str(tmp_path)], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "balance_parts=True contradicts the checkpoint, which holds balance_parts=False" in err
