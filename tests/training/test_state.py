"""Training state on disk: snapshots training cannot change, the background writer (one job at a time,
files in order, a failed write raised in the training thread, the previous file kept)."""

import errno
import threading
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from vpr_bench import _io
from vpr_bench.errors import CheckpointError
from vpr_bench.training import state as ckpt


def test_snapshot_is_a_copy_that_training_cannot_change():
    model = nn.BatchNorm1d(3)
    weights, cache = model.state_dict(), np.arange(4)
    snap = ckpt.snapshot({"model": weights, "cache": cache, "rng": (1, [2, 3]), "lr": 0.1})
    with torch.no_grad():
        model.weight.add_(1.0)  # an optimiser step after the snapshot
    cache[0] = 99  # the miner updating its cache in place
    assert torch.equal(snap["model"]["weight"], torch.ones(3))
    assert snap["cache"].tolist() == [0, 1, 2, 3] and snap["rng"] == (1, [2, 3]) and snap["lr"] == 0.1
    # still a module state dict: load_state_dict reads its per-module versions from _metadata
    assert isinstance(snap["model"], OrderedDict) and snap["model"]._metadata == weights._metadata
    model.load_state_dict(snap["model"])
    assert torch.equal(model.weight, torch.ones(3))


def test_the_writer_works_in_the_background_one_job_at_a_time(tmp_path):
    started, release, written = threading.Event(), threading.Event(), []

    def slow(path, data):
        started.set()
        release.wait(10)
        written.append((path.name, data))

    writer = ckpt.StateWriter()
    writer.submit((slow, tmp_path / "best", 1), (slow, tmp_path / "last", 2))
    assert started.wait(10) and writer.busy and written == []  # submit returned while it writes
    release.set()
    writer.submit((slow, tmp_path / "last", 3))  # first waits for the job in flight
    assert written[:2] == [("best", 1), ("last", 2)]
    writer.wait()
    assert written == [("best", 1), ("last", 2), ("last", 3)] and not writer.busy


def test_a_failed_background_write_raises_in_the_training_thread_and_keeps_the_file(tmp_path, monkeypatch):
    path, writer = tmp_path / ckpt.LAST, ckpt.StateWriter()
    writer.submit((ckpt.save_state, path, {"step": torch.tensor(1)}))
    writer.wait()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_io.os, "fsync", full_disk)
    writer.submit((ckpt.save_state, path, {"step": torch.tensor(2)}))  # returns; the write fails later
    with pytest.raises(
        _io.WriteError, match=r"cannot write .*last\.pt: No space left on device; the previous"
    ):
        writer.wait()
    monkeypatch.undo()
    assert ckpt.load_state(path)["step"] == 1 and not list(tmp_path.glob(".*.tmp"))
    writer.wait()  # raised once


def test_an_unexpected_writer_error_names_what_failed(tmp_path):
    def broken(path, data):
        raise TypeError("cannot pickle 'generator' object")

    writer = ckpt.StateWriter()
    writer.submit((broken, tmp_path / ckpt.LAST, None))
    with pytest.raises(
        CheckpointError, match=r"writing the training state failed: TypeError\(.cannot pickle"
    ):
        writer.submit((ckpt.save_state, tmp_path / ckpt.LAST, {}))  # the next write reports it first
    assert not (tmp_path / ckpt.LAST).exists()
