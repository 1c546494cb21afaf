import shutil

import pytest

from tests.conftest import tiny_config
from vpr_bench.errors import DatasetError
from vpr_bench.runner import evaluate_run


def test_corrupt_image_found_during_extraction_names_the_file(synthetic_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    victim = sorted((root / "images/test/database").iterdir())[5]  # not among the validation samples
    victim.write_bytes(victim.read_bytes()[:100])
    cfg = tiny_config(**{"data.dataset": f"folder:{root}", "eval.num_workers": 2, "out": str(tmp_path / "r")})
    with pytest.raises(DatasetError, match=rf"cannot read image .*{victim.name[:20]}") as err:
        evaluate_run(cfg)
    assert "Traceback" not in str(err.value)
    assert not list((tmp_path / "r").glob("*/*/*/metrics.json"))  # no record for a failed run


def test_drop_queries_without_positives(synthetic_root, tmp_path):
    cfg = tiny_config(
        **{
            "data.dataset": f"folder:{synthetic_root}",
            "data.pos_radius": 3.0,
            "data.drop_queries_without_positives": True,
            "out": str(tmp_path),
        }
    )
    run_dir = evaluate_run(cfg)
    import json

    protocol = json.loads((run_dir / "metrics.json").read_text())["protocol"]
    assert protocol["pos_radius_m"] == 3.0 and protocol["queries_without_positives"] > 0
    assert (
        protocol["num_queries_evaluated"] == protocol["num_queries"] - protocol["queries_without_positives"]
    )
