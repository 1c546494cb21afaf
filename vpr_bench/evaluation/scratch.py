"""The temporary folder an evaluation spills its database descriptors into
(``<run>/.descriptors-<pid>-<host>-*``), removed on any exit of the evaluation; where its process was
killed (SIGKILL, the out-of-memory killer), by the next evaluation on that machine in that run's results
folder, a run beside it, or the system's temporary folder, so that a killed run's scratch does not keep
the disk full. Only folders of this machine (``<host>``: a hash of its name) whose process has ended are
removed: a results folder may be shared by machines."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = ".descriptors-"  # also the prefix of ``results.descriptors``' scratch folder: same name format


@contextlib.contextmanager
def scratch_folder(run_dir: Path | None) -> Iterator[Path]:
    """A new folder inside ``run_dir`` (default: the system's temporary folder), removed when the block
    ends however it ends; first, the leftovers of ended processes there (and in the run folders beside
    ``run_dir``) are removed."""
    parent = Path(run_dir) if run_dir is not None else Path(tempfile.gettempdir())
    remove_leftovers([parent, *(parent.parent.glob("*/") if run_dir is not None else [])])
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=scratch_prefix()))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def scratch_prefix() -> str:
    """``.descriptors-<pid>-<host>-``: the process and machine a scratch folder belongs to."""
    return f"{PREFIX}{os.getpid()}-{_host()}-"


def remove_leftovers(folders: list[Path]) -> None:
    """Remove the scratch folders in ``folders`` made on this machine by processes that have ended."""
    for parent in folders:
        for folder in Path(parent).glob(f"{PREFIX}*"):
            pid, _, rest = folder.name[len(PREFIX) :].partition("-")
            ours = rest.startswith(f"{_host()}-") and pid.isdigit()
            if ours and not alive(int(pid)) and folder.is_dir():
                log.info("removing %s, left by process %s, which has ended", folder, pid)
                shutil.rmtree(folder, ignore_errors=True)


def _host() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
