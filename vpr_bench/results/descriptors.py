"""A run's descriptors kept in its folder (``--save-descriptors``) and read back (``eval --descriptors
RUN``), so that a split is evaluated again — another index, other metrics — without running the model.

``<run>/descriptors/`` holds ``database.npy`` (N, D) and ``queries.npy`` (M, D), L2-normalised, float16
by default (``--saved-descriptor-dtype``); ``database.txt`` and ``queries.txt``, the image paths in the
same order, one a line; and ``manifest.json``: dtype, sizes, the dataset, split and protocol described,
the model that made them (the record's method, variant, backbone and weights, the model configuration)
and its preprocessing. The folder is written whole beside its final name and renamed into place: it is
there complete, or not at all. Reading it back checks that the split's images are the ones described,
in the same order; the first that differs is named in one line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpr_bench._io import WriteError, _umask, atomic_write_json, require_free_space, reserve
from vpr_bench.config import RunConfig
from vpr_bench.datasets import Split
from vpr_bench.errors import VPRBenchError
from vpr_bench.evaluation.scratch import scratch_prefix

FOLDER = "descriptors"
ARRAYS = {"database": "database.npy", "queries": "queries.npy"}
PATHS = {"database": "database.txt", "queries": "queries.txt"}
MANIFEST = "manifest.json"
FORMAT = 1
CHUNK = 65536  # rows converted at a time: a large database is never held twice in memory
# the record fields that say which model made the descriptors (``runner.record_header``)
HEADER = ("method", "variant", "plugin", "backbone", "preset", "weights", "trained")
# the cost figures of the model itself (not of the search), carried over from the run that ran it
MODEL_COST = ("params", "gflops_per_image", "cost_image_size", "ms_per_image", "timing", "batch_size")


def save_descriptors(
    run_dir: Path, database: np.ndarray, queries: np.ndarray, split: Split, about: dict, dtype: str
) -> Path:
    """``run_dir/descriptors/`` (see the module's docstring); ``about``: the manifest's fields on the
    model (``header``, ``model``, ``preprocessing``)."""
    target = Path(run_dir) / FOLDER
    nbytes = (len(database) + len(queries)) * database.shape[1] * np.dtype(dtype).itemsize + 8192  # + headers
    require_free_space(run_dir, nbytes, f"the descriptors kept in {target}", "free some space there")
    try:  # the scratch folder's name tells whose it is: a killed run's is removed later (``scratch``)
        scratch = Path(tempfile.mkdtemp(dir=run_dir, prefix=scratch_prefix()))
    except OSError as exc:
        raise WriteError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        for name, array in (("database", database), ("queries", queries)):
            out = np.lib.format.open_memmap(scratch / ARRAYS[name], mode="w+", dtype=dtype, shape=array.shape)
            reserve(scratch / ARRAYS[name], f"the kept {name} descriptors")  # no SIGBUS on a full disk
            for start in range(0, len(array), CHUNK):
                out[start : start + CHUNK] = array[start : start + CHUNK]
            out.flush()
            del out
        for name, paths in (("database", split.database_paths), ("queries", split.query_paths)):
            (scratch / PATHS[name]).write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
        described = {"dataset": split.dataset, "split": split.name, "protocol": split.protocol_name}
        sizes = {"num_database": len(database), "num_queries": len(queries), "dim": int(database.shape[1])}
        manifest = {"format": FORMAT, "dtype": dtype, "l2_normalised": True, **sizes, **described, **about}
        files = {**ARRAYS, **{f"{name}_paths": file for name, file in PATHS.items()}}
        atomic_write_json(scratch / MANIFEST, {**manifest, "files": files})
        os.chmod(scratch, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder its usual permissions
        os.replace(scratch, target)
    except BaseException as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(f"cannot write {target}: {exc.strerror or exc}") from exc
        raise
    return target


def descriptor_saver(run_dir: Path, split: Split, cfg: RunConfig, header: dict) -> Callable | None:
    """What ``evaluate`` calls with the database and query descriptors while they exist, where
    ``--save-descriptors`` asks for them; None otherwise. ``header``: the record's fields on the model."""
    if not cfg.eval.save_descriptors:
        return None
    about = {
        "header": {k: header.get(k) for k in HEADER},
        "model": dataclasses.asdict(cfg.model),
        "preprocessing": {
            "image_size": list(cfg.data.image_size),
            "preprocess": cfg.data.preprocess,
            "interpolation": cfg.data.interpolation,
        },
    }

    def save(database: np.ndarray, queries: np.ndarray) -> None:
        save_descriptors(run_dir, database, queries, split, about, cfg.eval.saved_descriptor_dtype)

    return save


@dataclass
class StoredDescriptors:
    """Descriptors a run kept, checked against the split they are evaluated on."""

    folder: Path
    manifest: dict
    database: np.ndarray  # (N, D), memory-mapped
    queries: np.ndarray  # (M, D)
    model_cost: dict  # the cost figures of the model that made them (its run's record), or {}

    @property
    def header(self) -> dict:
        return dict(self.manifest.get("header") or {})

    def arrays(self) -> dict[str, np.ndarray]:
        """The descriptors as ``evaluate`` takes them (``given``)."""
        return {"database": self.database, "queries": self.queries}

    def configure(self, cfg: RunConfig) -> RunConfig:
        """``cfg`` with the model and preprocessing that made the descriptors, and a float16 database
        searched as the float16 it is (the record's index says ``flat-fp16``)."""
        model = RunConfig.from_dict({"model": self.manifest.get("model") or {}}).model
        if cfg.model.method != model.method:
            raise VPRBenchError(
                f"--descriptors {self.folder.parent}: kept by {model.method}, not {cfg.model.method}; "
                f"drop --method or give --method {model.method}"
            )
        data = dataclasses.replace(cfg.data)
        prep = self.manifest.get("preprocessing") or {}
        data.image_size = tuple(prep.get("image_size", data.image_size))
        data.preprocess = prep.get("preprocess", data.preprocess)
        data.interpolation = prep.get("interpolation", data.interpolation)
        evaluation = dataclasses.replace(cfg.eval, save_descriptors=False)
        if self.manifest.get("dtype") == "float16":
            evaluation.descriptor_dtype = "float16"
        return dataclasses.replace(cfg, model=model, data=data, eval=evaluation)

    def record_fields(self) -> dict:
        """What the record says about where its descriptors came from (no model ran: its cost figures
        are those the keeping run recorded, on its own device)."""
        return {
            "descriptors": {
                "from": str(self.folder),
                "dtype": self.manifest.get("dtype"),
                "model_ran": False,
                "model_cost_from": str(self.folder.parent / "metrics.json") if self.model_cost else None,
            }
        }


def kept_fields(cfg: RunConfig) -> dict:
    """What a record says of the descriptors it kept (``--save-descriptors``); nothing otherwise."""
    if not cfg.eval.save_descriptors:
        return {}
    return {"descriptors": {"kept_in": FOLDER, "dtype": cfg.eval.saved_descriptor_dtype}}


def stored_method(run: str | Path) -> str | None:
    """The method whose descriptors ``run`` kept (for ``eval --descriptors RUN`` without ``--method``)."""
    return (read_manifest(run)[1].get("model") or {}).get("method")


def read_manifest(run: str | Path) -> tuple[Path, dict]:
    """``run``'s descriptors folder (``RUN/descriptors`` or that folder itself) and its manifest."""
    folder = Path(run) / FOLDER if (Path(run) / FOLDER).is_dir() else Path(run)
    if not (folder / MANIFEST).is_file():
        raise VPRBenchError(
            f"--descriptors {run}: no kept descriptors there (no {FOLDER}/{MANIFEST}); evaluate with "
            "--save-descriptors to keep them"
        )
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise VPRBenchError(f"--descriptors {run}: cannot read {folder / MANIFEST} ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise VPRBenchError(f"--descriptors {run}: {folder / MANIFEST} is format {manifest.get('format')}")
    return folder, manifest


def read_descriptors(run: str | Path, split: Split) -> StoredDescriptors:
    """The descriptors ``run`` kept, if they describe ``split``'s images in its order; else a one-line
    error naming the first image that differs."""
    folder, manifest = read_manifest(run)
    described = f"{manifest.get('dataset')}/{manifest.get('split')} ({manifest.get('protocol')})"
    for name, paths in (("database", split.database_paths), ("queries", split.query_paths)):
        kept = (folder / PATHS[name]).read_text(encoding="utf-8").splitlines()
        wanted = [str(p) for p in paths]
        if kept == wanted:
            continue
        if len(kept) != len(wanted):
            raise VPRBenchError(
                f"--descriptors {run}: they describe {len(kept)} {name} images of {described}, this split "
                f"({split.dataset}/{split.name}) has {len(wanted)}"
            )
        i = next(i for i, (a, b) in enumerate(zip(kept, wanted, strict=True)) if a != b)
        raise VPRBenchError(
            f"--descriptors {run}: {name} image {i} is {kept[i]} there but {wanted[i]} in this split: "
            f"they describe {described}, not {split.dataset}/{split.name}"
        )
    database = np.load(folder / ARRAYS["database"], mmap_mode="r")
    queries = np.asarray(np.load(folder / ARRAYS["queries"]), dtype=np.float32)
    return StoredDescriptors(folder, manifest, database, queries, _model_cost(folder.parent))


def _model_cost(run_dir: Path) -> dict:
    """The model's cost figures from the record of the run that kept the descriptors, where it has one."""
    try:
        cost = json.loads((run_dir / "metrics.json").read_text()).get("cost") or {}
    except (OSError, ValueError):
        return {}
    return {k: cost[k] for k in MODEL_COST if k in cost}
