"""The results store: one folder per run, written atomically, never reused or overwritten.

``results/<dataset>/<method>/<run-id>/`` holds ``config.json`` (every setting, seed, preset, package
versions, git commit), ``metrics.json`` (the record: metrics, cost, protocol) and ``run.log``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from vpr_bench._io import WriteError, atomic_write_json

SCHEMA_VERSION = 1
PACKAGES = ("vpr-bench", "torch", "torchvision", "timm", "faiss-cpu", "pytorch-metric-learning", "numpy")
log = logging.getLogger(__name__)


def slug(name: str) -> str:
    """A file-system-safe folder name for a dataset or method name."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "unnamed"


def new_run_dir(out: str | Path, dataset: str, method: str) -> Path:
    """Create and return a fresh run folder; ``mkdir`` without exist_ok makes the id unique."""
    parent = Path(out) / slug(dataset) / slug(method)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # --out, or a folder on the way, is a file
        blocking = next((p for p in (parent, *parent.parents) if p.is_file()), Path(out))
        if blocking == Path(out):
            raise WriteError(
                f"--out {out} is a file, not a folder; give --out a folder (it is created if missing)"
            ) from None
        raise WriteError(
            f"--out {out}: {blocking} is a file, not a folder; give --out another folder"
        ) from None
    except OSError as exc:
        raise WriteError(f"--out {out}: cannot create {parent}: {exc.strerror or exc}") from None
    while True:
        run_id = f"{dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        try:
            (parent / run_id).mkdir()
            return parent / run_id
        except FileExistsError:
            continue


def environment() -> dict:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"packages": versions, "git_commit": commit}


def write_record(run_dir: Path, config: dict, record: dict) -> None:
    """Write config.json then metrics.json (the record's presence marks a finished run).

    A config.json the run already has (written when training started) is completed, not replaced: its
    ``argv`` and its ``record_extra`` (e.g. a student's pipeline link) stay; a resumed run's command goes
    to ``resume_argv``."""
    path = run_dir / "config.json"
    try:
        existing = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        existing = {}
    merged = {**existing, **config}
    if "argv" in existing and config.get("argv") not in (None, existing["argv"]):
        merged["argv"], merged["resume_argv"] = existing["argv"], config["argv"]
    atomic_write_json(path, {**merged, "environment": environment()})
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_dir.name,
        "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        **record,
    }
    atomic_write_json(run_dir / "metrics.json", record)


@dataclass
class Record:
    run_dir: Path
    data: dict  # the parsed metrics.json, unknown fields kept

    @property
    def run_id(self) -> str:
        return self.data.get("run_id", self.run_dir.name)

    def get(self, dotted: str, default=None):
        value = self.data
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                return default
            value = value[part]
        return value


def load_records(
    results_dir: str | Path, dataset: str | None = None, method: str | None = None
) -> list[Record]:
    """Every finished run under ``results_dir``; a corrupt record is skipped with a warning naming it."""
    records = []
    for path in sorted(Path(results_dir).glob("*/*/*/metrics.json")):
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or "metrics" not in data:
                raise ValueError("no 'metrics' section")
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable result record %s: %s", path, exc)
            continue
        if dataset and data.get("dataset") != dataset:
            continue
        if method and data.get("method") != method:
            continue
        records.append(Record(path.parent, data))
    return records
