import json
import logging

import pytest

from vpr_bench._io import atomic_write_json
from vpr_bench.results import load_records, new_run_dir, write_record
from vpr_bench.results.render import records_table


def test_run_ids_are_never_reused(tmp_path):
    dirs = {new_run_dir(tmp_path, "folder:/x y", "gem") for _ in range(50)}
    assert len(dirs) == 50
    assert all(d.parent == tmp_path / "folder_x_y" / "gem" for d in dirs)


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"a": 1})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", disk_full)
    with pytest.raises(OSError):
        atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_records_load_and_corrupt_ones_are_skipped(tmp_path, caplog):
    good = new_run_dir(tmp_path, "synthetic", "gem")
    write_record(good, {"seed": 1}, {"method": "gem", "dataset": "synthetic", "metrics": {"R@1": 50.0}})
    bad = new_run_dir(tmp_path, "synthetic", "gem")
    (bad / "metrics.json").write_text('{"metrics": {"R@1": ')
    with caplog.at_level(logging.WARNING):
        records = load_records(tmp_path, dataset="synthetic")
    assert [r.run_dir for r in records] == [good]
    assert str(bad / "metrics.json") in caplog.text
    record = records[0]
    assert record.get("schema_version") == 1 and record.get("metrics.R@1") == 50.0
    assert json.loads((good / "config.json").read_text())["environment"]["packages"]["torch"]
    table = records_table(records)
    assert "50.0" in table and "—" in table  # missing fields are shown as a dash


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    import os
    import stat

    path = tmp_path / "record.json"
    atomic_write_json(path, {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600


def test_writing_the_record_keeps_the_runs_pipeline_link_and_first_command(tmp_path):
    """A student resumed after a failed record write keeps its teacher link and its original argv."""
    import json

    from vpr_bench._io import atomic_write_json
    from vpr_bench.results.store import write_record

    run = tmp_path / "run"
    run.mkdir()
    link = {"pipeline": {"role": "student", "teacher_run": "results/x/tscm-teacher/1"}}
    atomic_write_json(run / "config.json", {"argv": ["vpr-bench", "run"], "seed": 1, "record_extra": link})
    write_record(run, {"argv": ["vpr-bench", "run", "--resume", str(run)], "seed": 1}, {"metrics": {}})
    config = json.loads((run / "config.json").read_text())
    assert config["record_extra"] == link
    assert config["argv"] == ["vpr-bench", "run"] and config["resume_argv"][-2:] == ["--resume", str(run)]
    assert "environment" in config
