"""Faults that must never lose work: a full disk mid-checkpoint or mid-record, a full disk before the
descriptors or the image cache are written (one line, nothing left behind), concurrent writers.

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
import re
import shutil
import subprocess
import sys

import pytest

from vpr_bench import _io
from vpr_bench.errors import VPRBenchError
from vpr_bench.evaluation.scratch import scratch_prefix
from vpr_bench.results import load_records, new_run_dir, write_record
from vpr_bench.runner import train_run
from vpr_bench.testing import TINY_CLI, TINY_TRAINING, run_cli, tiny_config
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


# ---- a full disk while describing: a memory-mapped write there would end the process with SIGBUS -----


def full_disk(monkeypatch, free: int = 0, under=None) -> None:
    """The file system of every folder (of those ``under`` a folder) reports ``free`` bytes free."""
    real = shutil.disk_usage

    def disk_usage(path):
        usage = real(path)
        return usage._replace(free=free) if under is None or str(path).startswith(str(under)) else usage

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)


def eval_args(root, out, *extra) -> list[str]:
    return ["eval", "--method", "gem", "--dataset", f"folder:{root}", "--out", str(out), *TINY_CLI, *extra]


def leftovers(out) -> list:
    return [p for p in out.rglob(".descriptors-*")]


def test_disk_full_before_the_descriptors_are_written_is_one_line_and_leaves_nothing(
    synthetic_root, tmp_path, monkeypatch, capsys
):
    assert run_cli(eval_args(synthetic_root, tmp_path), capsys)[0] == 0  # an earlier record
    full_disk(monkeypatch)
    code, _, err = run_cli(eval_args(synthetic_root, tmp_path, "--image-cache", "off"), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    expected = r"error: not enough free space in .*/\.descriptors-[^ ]* for 40x\d+ float32 descriptors: "
    assert re.search(expected + r"[\d.]+ KiB needed, 0 B free; free some space there", err), err
    monkeypatch.undo()
    assert leftovers(tmp_path) == [] and len(load_records(tmp_path)) == 1  # the earlier record intact


def test_disk_full_while_allocating_the_descriptors_is_one_line_and_leaves_nothing(
    synthetic_root, tmp_path, monkeypatch, capsys
):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)  # the space went between the check and the write
    code, _, err = run_cli(eval_args(synthetic_root, tmp_path, "--image-cache", "off"), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(r"cannot write 40x\d+ float32 descriptors to .*database\.npy: No space left on dev", err)
    assert leftovers(tmp_path) == [] and load_records(tmp_path) == []


def test_a_given_image_cache_on_a_full_disk_is_one_line_naming_it_and_the_size(
    synthetic_root, tmp_path, monkeypatch, capsys
):
    cache = tmp_path / "image-cache-given"
    full_disk(monkeypatch, free=5000)
    code, _, err = run_cli(eval_args(synthetic_root, tmp_path, "--image-cache", str(cache)), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"error: --image-cache {cache}: not enough free space in {cache} for 40 decoded images" in err
    assert "160.0 KiB needed, 4.9 KiB free" in err  # 40 database images of 32x32x3: a 4 KiB block each
    assert not cache.exists() and leftovers(tmp_path) == []


def test_the_default_image_cache_on_a_full_disk_warns_once_and_the_run_goes_on(
    synthetic_root, tmp_path, monkeypatch, capsys
):
    full_disk(monkeypatch, free=5000, under=os.environ["VPR_BENCH_IMAGE_CACHE"])  # the tests' default
    code, _, err = run_cli(eval_args(synthetic_root, tmp_path, "--image-cache", "auto"), capsys)
    warnings = [line for line in err.splitlines() if "image cache" in line]
    assert code == 0 and len(warnings) == 1 and "needed" in warnings[0]
    assert len(load_records(tmp_path)) == 1 and leftovers(tmp_path) == []


def test_a_killed_evaluations_scratch_is_removed_by_the_next_one(synthetic_root, tmp_path, capsys):
    assert run_cli(eval_args(synthetic_root, tmp_path), capsys)[0] == 0
    (run_dir,) = tmp_path.glob("*/*/*")
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()  # its pid is now that of an ended process, as a SIGKILLed evaluation's would be
    host = scratch_prefix().split("-")[2]
    left = run_dir / f".descriptors-{killed.pid}-{host}-x1y2z3"
    left.mkdir()
    (left / "database.npy").write_bytes(bytes(10_000))
    assert run_cli(eval_args(synthetic_root, tmp_path), capsys)[0] == 0  # a new run beside it
    assert not left.exists() and leftovers(tmp_path) == []
