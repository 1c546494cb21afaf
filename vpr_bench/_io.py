"""Atomic file writes: a reader sees the old file or the new one, never half of one; the free space a
large file needs, checked before it is written."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vpr_bench.errors import VPRBenchError


class WriteError(VPRBenchError, OSError):
    """A file could not be written (disk full, permissions); its previous version is intact."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``path`` through a temporary file and ``os.replace``. On failure (a full disk, no permission)
    the temporary file is removed, the previous ``path`` is untouched, and a ``WriteError`` says so."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file its usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            kept = "the previous version is kept" if path.exists() else "nothing was written"
            raise WriteError(f"cannot write {path}: {exc.strerror or exc}; {kept}") from exc
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def require_free_space(folder: str | os.PathLike, nbytes: int, what: str, fix: str = "") -> None:
    """A ``WriteError`` naming ``folder`` and the size needed when its file system has fewer than
    ``nbytes`` free (``folder`` need not exist yet: its nearest existing parent is asked). Writing into
    a memory-mapped file on a full disk kills the process with SIGBUS and no message; this check is the
    message. ``fix``: what the user can do, added to it."""
    free = free_space(folder)
    if free < nbytes:
        raise WriteError(
            f"not enough free space in {folder} for {what}: {format_bytes(nbytes)} needed, "
            f"{format_bytes(free)} free{'; ' + fix if fix else ''}"
        )


def free_space(folder: str | os.PathLike) -> int:
    """Bytes free for an unprivileged user on the file system that holds (or would hold) ``folder``."""
    existing = Path(os.path.abspath(folder))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def reserve(path: str | os.PathLike, what: str) -> None:
    """Allocate the blocks of the file ``path`` now (``posix_fallocate``), so that writing it through a
    memory map later cannot meet a full disk (SIGBUS): a full disk is a ``WriteError`` here instead.
    Where the platform or file system lacks the call, the free-space check stands alone."""
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise WriteError(f"cannot write {what} to {path}: {exc.strerror}") from exc


def format_bytes(nbytes: float) -> str:
    """``512 B``, ``3.2 MiB``, ``1.5 GiB``."""
    units, power = ("B", "KiB", "MiB", "GiB", "TiB"), 0
    while abs(nbytes) >= 1024 and power < len(units) - 1:
        nbytes, power = nbytes / 1024, power + 1
    return f"{nbytes:.0f} B" if power == 0 else f"{nbytes:.1f} {units[power]}"
