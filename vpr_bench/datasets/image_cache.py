"""The decoded-image cache: each image as the evaluation transform makes it before its float steps, kept
on disk so that a second pass over a split (the next epoch's cache refresh, each validation, the test, a
teacher, the next published model on the same dataset) reads it instead of decoding the file again.

One entry per image and per *stage* (what the transform's PIL steps produce: the image resized to HxW
with an interpolation, or the decoded image at its own size), in
``<folder>/v1/<stage>/<ab>/<sha1 of the image's absolute path>``: a 56-byte header (a magic number, the
image file's size, mtime_ns and ctime_ns when it was read, and the entry's height, width and channels)
followed by the (H, W, C) uint8 pixels. An entry is valid while the image file's size and times are those
it records; a changed file is decoded again and its entry replaced. Entries are written to a temporary
file and renamed into place (by the DataLoader's workers, in parallel), so a killed fill leaves whole
entries and no half ones. One entry per image, rather than one array per split, serves any subset of a
split (a training round's queries, a mined tuple's images) and images of different sizes alike, and a
full disk fails a plain write (ENOSPC), never a memory-mapped one (SIGBUS).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpr_bench._io import WriteError, require_free_space

log = logging.getLogger(__name__)

ENV = "VPR_BENCH_IMAGE_CACHE"  # the default folder (``--image-cache auto``), or off
FORMAT = "v1"
MAGIC = 0x31474D4952505600  # b"\0VPRIMG1" read as a little-endian int64
HEADER = 7  # int64 fields: magic, size, mtime_ns, ctime_ns, height, width, channels
HEADER_BYTES = 8 * HEADER
Stamp = tuple[int, int, int]  # the image file's (size, mtime_ns, ctime_ns)
_refused: set[str] = set()  # default folders that failed in this process: warned once, no more writes


def cache_folder(setting: str) -> tuple[Path | None, bool]:
    """The folder ``--image-cache`` names and whether it was given (errors) rather than the default
    (warnings): ``off`` → None; ``auto`` → ``$VPR_BENCH_IMAGE_CACHE`` (a folder, or off), else
    ``$XDG_CACHE_HOME/vpr-bench/images``, else ``~/.cache/vpr-bench/images``."""
    if setting == "off":
        return None, False
    if setting != "auto":
        return Path(setting).expanduser(), True
    chosen = os.environ.get(ENV, "").strip()
    if chosen:
        return (None if chosen == "off" else Path(chosen).expanduser()), False
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vpr-bench" / "images", False


@dataclass(frozen=True)
class ImageCache:
    """The entries of one stage under ``folder``. ``given``: the folder was named by ``--image-cache``
    (a problem is an error) rather than the default (one warning, then no more writes in this process:
    valid entries are still read, the other images decoded as without a cache)."""

    folder: Path
    stage: str
    given: bool = False

    @property
    def root(self) -> Path:
        return self.folder / FORMAT / self.stage

    def entry(self, path: str | os.PathLike) -> Path:
        key = hashlib.sha1(os.fsencode(os.path.abspath(path))).hexdigest()
        return self.root / key[:2] / key[2:]

    def read(self, path: str | os.PathLike) -> tuple[np.ndarray | None, Stamp | None]:
        """The valid entry of the image ``path`` as (H, W, C) uint8, or None; and the image file's stamp
        now (None where it cannot be read: decoding it names the problem)."""
        stamp = stamp_of(path)
        if stamp is None:
            return None, None
        try:
            data = np.fromfile(self.entry(path), dtype=np.uint8)
        except (OSError, ValueError):
            return None, stamp
        if len(data) < HEADER_BYTES:
            return None, stamp
        magic, size, mtime, ctime, height, width, channels = data[:HEADER_BYTES].view("<i8").tolist()
        whole = len(data) == HEADER_BYTES + height * width * channels
        if magic != MAGIC or (size, mtime, ctime) != stamp or not whole:
            return None, stamp
        return data[HEADER_BYTES:].reshape(height, width, channels), stamp

    def write(self, path: str | os.PathLike, stamp: Stamp | None, image: np.ndarray) -> None:
        """Keep ``image`` (H, W, C) uint8, made from the file ``path`` as it was at ``stamp``: written
        whole to a temporary file, then renamed into place. A write that fails (a full disk) removes its
        temporary file, then ``refuse``s."""
        if stamp is None or not self.writable:
            return
        entry = self.entry(path)
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        header = np.array([MAGIC, *stamp, *image.shape], dtype="<i8")
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(header.tobytes())
                f.write(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
            os.replace(tmp, entry)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            self.refuse(
                f"cannot write {entry}: {exc.strerror or exc}", "" if full else "a folder you can write to"
            )

    @property
    def writable(self) -> bool:
        return str(self.folder) not in _refused

    def missing(self, paths: Sequence[str | os.PathLike]) -> list[int]:
        """The positions in ``paths`` of images without an entry (a stale entry counts as present: it
        is replaced, not added)."""
        return [i for i, path in enumerate(paths) if not os.path.exists(self.entry(path))]

    def make_room(self, count: int, height: int, width: int, channels: int = 3) -> None:
        """Check that ``count`` new entries of (height, width, channels) fit in the folder's free space,
        before they are written; where they do not, ``refuse``."""
        entry_bytes = HEADER_BYTES + height * width * channels
        needed = count * (-(-entry_bytes // 4096) * 4096)  # whole file-system blocks
        try:
            require_free_space(self.folder, needed, f"{count} decoded images ({self.stage})")
        except WriteError as exc:
            self.refuse(str(exc))

    def refuse(self, problem: str, instead: str = "") -> None:
        """A problem with the folder: an error where it was given (the fix: free space there, or
        ``instead``); with the default folder one warning line, and no more writes there in this process."""
        if self.given:
            fix = (
                f"give --image-cache {instead} or off"
                if instead
                else "free space there or give --image-cache off"
            )
            raise WriteError(f"--image-cache {self.folder}: {problem}; {fix}")
        if str(self.folder) not in _refused:
            _refused.add(str(self.folder))
            log.warning(
                "image cache %s: %s; images are decoded from their files instead (--image-cache off: "
                "no cache, no warning)",
                self.folder,
                problem,
            )


def stamp_of(path: str | os.PathLike) -> Stamp | None:
    """The image file's (size, mtime_ns, ctime_ns), or None where it cannot be read. Any change to the
    file changes its ctime, also one that sets its mtime back (``cp -p``, ``touch -d``, ``rsync -t``)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns
