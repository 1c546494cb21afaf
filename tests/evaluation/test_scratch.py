"""The descriptors' scratch folder: removed however the evaluation ends; a killed process's, by the next
evaluation on the machine; a live process's or another machine's, never."""

import os
import subprocess
import sys

import pytest

from vpr_bench.evaluation import scratch
from vpr_bench.evaluation.scratch import scratch_folder


def test_the_scratch_folder_is_removed_however_the_block_ends(tmp_path):
    with scratch_folder(tmp_path) as folder:
        (folder / "database.npy").write_bytes(b"x")
        assert folder.parent == tmp_path and folder.name.startswith(scratch.scratch_prefix())
    assert not folder.exists()
    with pytest.raises(RuntimeError), scratch_folder(tmp_path) as folder:
        raise RuntimeError("the extraction failed")
    assert not folder.exists() and list(tmp_path.iterdir()) == []


def ended_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_ended_processes_on_this_machine_are_removed_the_others_kept(tmp_path):
    run_dir, beside = tmp_path / "gem" / "run-2", tmp_path / "gem" / "run-1"
    dead, host = ended_pid(), scratch.scratch_prefix().split("-")[2]
    folders = {
        "killed here": run_dir / f".descriptors-{dead}-{host}-abc",
        "killed beside": beside / f".descriptors-{dead}-{host}-def",
        "alive": beside / f".descriptors-{os.getpid()}-{host}-ghi",
        "another machine": beside / f".descriptors-{dead}-0000beef-jkl",
        "no owner": beside / ".descriptors-mnopqrst",
    }
    for folder in folders.values():
        (folder / "database.npy").parent.mkdir(parents=True)
        (folder / "database.npy").write_bytes(b"x" * 1000)
    with scratch_folder(run_dir):
        pass
    assert {name: folder.exists() for name, folder in folders.items()} == {
        "killed here": False,
        "killed beside": False,
        "alive": True,
        "another machine": True,
        "no owner": True,
    }
