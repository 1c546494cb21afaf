"""Faults that must never lose work: a full disk mid-checkpoint or mid-record, concurrent writers.

(The other faults of the suite live beside the code they exercise: corrupt/missing images and wrong or
truncated .mat files in tests/datasets, unknown names and invalid options in tests/test_cli.py and
tests/test_config.py, NaN loss, Ctrl-C and SIGKILL + --resume in tests/training/test_trainer.py, a
malicious pickle in tests/test_checkpoints.py, a plugin raising on import in tests/test_plugins.py.)
"""

import copy
import errno
import json
import multiprocessing
import os

import pytest

from vpr_bench import _io
from vpr_bench.errors import VPRBenchError
from vpr_bench.results import load_records, new_run_dir, write_record
from vpr_bench.runner import train_run
from vpr_bench.testing import TINY_TRAINING, tiny_config
from vpr_bench.training import state as ckpt


def disk_full_after(monkeypatch, writes: int, name: str | None = None):
    """``os.fsync`` fails with ENOSPC once ``writes`` atomic writes (of files called ``name``) are done."""
    real, seen = os.fsync, {"n": 0}

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if name is None or os.path.basename(target).startswith(f".{name}."):
            seen["n"] += 1
            if seen["n"] > writes:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(_io.os, "fsync", fsync)


def config(root, out):
    return tiny_config(**{"data.dataset": f"folder:{root}", "out": str(out), **TINY_TRAINING})


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(synthetic_root, tmp_path, monkeypatch):
    attempts, save_state = [], ckpt.save_state  # the progress of every checkpoint the trainer writes

    def recording(path, state):
        attempts.append(copy.deepcopy(state["progress"]))
        save_state(path, state)

    monkeypatch.setattr(ckpt, "save_state", recording)
    disk_full_after(monkeypatch, 3, name=ckpt.LAST)  # the 4th checkpoint write fails
    with pytest.raises(
        VPRBenchError, match=r"cannot write .*last\.pt: No space left on device; the previous"
    ):
        train_run(config(synthetic_root, tmp_path))
    monkeypatch.undo()
    (run_dir,) = tmp_path.glob("*/*/*")
    assert not list(run_dir.glob(".*.tmp"))  # no half-written file left behind
    state = ckpt.load_state(run_dir / ckpt.LAST)  # still a valid checkpoint ...
    assert len(attempts) == 4 and attempts[3]["global_step"] > attempts[2]["global_step"]
    assert state["progress"] == attempts[2]  # ... the 3rd one, whole: the last write that succeeded
    progress = state["progress"]  # epoch 1 after its 2nd batch; the 4th write (the epoch's end) failed
    assert (progress["epoch"], progress["position"], progress["global_step"]) == (0, 2, 2)
    assert json.loads((train_run(resume=run_dir) / "metrics.json").read_text())["training"]["epochs"] == 2


def test_disk_full_while_writing_the_record_then_resume_writes_it(synthetic_root, tmp_path, monkeypatch):
    disk_full_after(monkeypatch, 0, name="metrics.json")
    with pytest.raises(VPRBenchError, match=r"metrics\.json: No space left on device; nothing was written"):
        train_run(config(synthetic_root, tmp_path))
    monkeypatch.undo()
    (run_dir,) = tmp_path.glob("*/*/*")
    assert not (run_dir / "metrics.json").exists() and load_records(tmp_path) == []
    assert ckpt.load_state(run_dir / ckpt.LAST)["progress"]["finished"] is True
    record = json.loads((train_run(resume=run_dir) / "metrics.json").read_text())
    assert record["training"]["epochs"] == 2


def _write_records(args):
    out, worker = args
    for i in range(10):
        run_dir = new_run_dir(out, "synthetic", "gem")
        write_record(run_dir, {"worker": worker}, {"method": "gem", "metrics": {"R@1": worker * 100 + i}})


def test_concurrent_runs_never_clobber_each_other(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_write_records, [(str(tmp_path), w) for w in range(4)])
    records = load_records(tmp_path)
    assert len(records) == 40 and len({r.run_dir for r in records}) == 40
    assert sorted(r.get("metrics.R@1") for r in records) == sorted(
        w * 100 + i for w in range(4) for i in range(10)
    )
