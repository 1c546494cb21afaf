"""``compare --published``: a published figure is set beside a run only for the same method, official file
and protocol, with the difference measured − published; a run under another protocol says which protocol
the figure needs; a secondhand figure is marked †. Records are written as JSON into tmp folders; the
figures are the zoo's (``vpr-bench list``), never FACTS-style references to internal files."""

import json
from pathlib import Path

from vpr_bench.testing import run_cli

MIXVPR_FILE = "resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt"


def write_eval(
    root: Path, run: str, method: str, dataset: str, protocol: str, r1: float, r5: float, weights: str
):
    record = {
        "schema_version": 1,
        "run_id": run,
        "created": "2026-12-09T10:00:00+00:00",
        "method": method,
        "dataset": dataset,
        "command": "eval",
        "backbone": "resnet50",
        "preset": "paper",
        "weights": weights,
        "trained": True,
        "metrics": {"R@1": r1, "R@5": r5},
        "protocol": {"name": protocol},
        "cost": {"params": 10e6, "device": "cpu"},
    }
    folder = root / dataset / method / run
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(record))


def test_the_published_figure_is_set_beside_a_run_of_its_file_and_protocol_only(tmp_path, capsys):
    official = f"official {MIXVPR_FILE}"
    write_eval(tmp_path, "on-pitts", "mixvpr", "pitts30k", "pitts30k-test-25m", 90.1, 95.0, official)
    write_eval(tmp_path, "on-synth", "mixvpr", "synthetic", "synthetic-test-25m", 40.0, 50.0, official)
    args = ["compare", "--results", str(tmp_path), "--published", "--format", "csv"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    header, *rows = list(__import__("csv").reader(out.splitlines()))
    cells = [dict(zip(header, row, strict=True)) for row in rows]
    (row,) = cells  # one mixvpr setting, a column group per dataset
    # MixVPR's README: Pitts30k 91.6 / 95.5
    assert float(row["pitts30k/pub_R@1"]) == 91.6 and float(row["pitts30k/pub_R@5"]) == 95.5
    assert abs(float(row["pitts30k/diff_R@1"]) - (90.1 - 91.6)) < 1e-9
    assert abs(float(row["pitts30k/diff_R@5"]) - (95.0 - 95.5)) < 1e-9
    assert row["pitts30k/published"] == "amaralibey/MixVPR README"
    # another protocol is never compared: it says which protocol the figure needs
    assert row["synthetic/pub_R@1"] == "" and row["synthetic/diff_R@1"] == ""
    assert row["synthetic/published"].startswith("protocol differs: published on pitts250k-test-25m")
    assert "pitts30k-test-25m" in row["synthetic/published"]
    code, out, _ = run_cli(["compare", "--results", str(tmp_path), "--published"], capsys)  # 80 columns
    assert code == 0 and "pub R@1" in out and "Δ R@1" in out
    assert "published, mixvpr on pitts30k: amaralibey/MixVPR README" in out.splitlines()
    assert "published, mixvpr on synthetic: protocol differs: published on pitts250k-test-25m" in out


def test_a_secondhand_figure_is_marked_and_other_weights_are_not_compared(tmp_path, capsys):
    write_eval(
        tmp_path, "salad", "salad", "pitts30k", "pitts30k-test-25m", 94.0, 98.0, "official dino_salad.ckpt"
    )
    write_eval(tmp_path, "mine", "mixvpr", "pitts30k", "pitts30k-test-25m", 50.0, 60.0, "checkpoint:x.ckpt")
    write_eval(
        tmp_path,
        "radius",
        "boq",
        "pitts30k",
        "pitts30k-test-25m@10m",
        90.0,
        95.0,
        "official dinov2_12288.pth",
    )
    code, out, err = run_cli(
        ["compare", "--results", str(tmp_path), "--published", "--format", "markdown"], capsys
    )
    assert code == 0, err
    salad = next(line for line in out.splitlines() if line.startswith("| salad "))
    # SALAD's Pitts30k figure is the paper's Table 3 as quoted in an issue: secondhand, marked †
    assert "95.1†" in salad and "98.5†" in salad and "-1.1" in salad and "† paper Table 3" in salad
    mine = next(line for line in out.splitlines() if line.startswith("| mixvpr "))
    assert "not an official file" in mine and "91.6" not in mine
    boq = next(line for line in out.splitlines() if line.startswith("| boq "))
    assert (
        "protocol differs: published on" in boq and "93.7" not in boq
    )  # a changed radius is another protocol
    assert "† quoted by others; Δ = measured − published" in out
    code, out, _ = run_cli(["compare", "--results", str(tmp_path)], capsys)
    assert code == 0 and "pub R@1" not in out  # only on request


def test_list_names_every_figures_source_and_never_an_internal_file(capsys):
    code, out, err = run_cli(["list"], capsys)
    assert code == 0, err
    assert "pitts30k-test-25m 91.6/95.5" in out and "(amaralibey/MixVPR README)" in out
    assert "95.1/98.5†" in out and "quoted in serizba/salad issue 6" in out
    assert "FACTS" not in out and "shared/" not in out


def test_the_docs_never_cite_internal_files():
    root = Path(__file__).resolve().parents[2]
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = path.read_text()
        assert "FACTS" not in text and "shared/" not in text, path
