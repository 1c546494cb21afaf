"""The embedded ``synthetic`` dataset: generated on first use, written in the folder layout.

Each split (train/val/test) has its own streets, so no place is shared between splits. Database views
are taken every ``db_spacing`` metres along each street, facing the facades, with mild appearance
changes; query views come from random positions with shifted distance, heading, height and pitch, and
strong appearance changes. UTM coordinates follow the geometry (streets are ≥ 170 m apart), so the 25 m
rule is meaningful. A marker file written last (``synthetic.json``) tells a complete dataset from a
half-written one, which is regenerated rather than read.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from vpr_bench._io import atomic_write_json
from vpr_bench.config import DataConfig
from vpr_bench.datasets.base import dataset_root
from vpr_bench.datasets.folder import FolderDataset
from vpr_bench.datasets.synthetic_render import View, change_appearance, make_facade, render
from vpr_bench.errors import DatasetError
from vpr_bench.registry import register_dataset

GENERATOR_VERSION = 1
MARKER = "synthetic.json"
SPLITS = {"train": 0, "val": 1, "test": 2}
GRID_M = 1000.0  # street origins lie on a grid this far apart
ORIGIN = (585000.0, 4475000.0)  # UTM 17T, near Pittsburgh
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthConfig:
    places: int = 480  # database images of the test and val splits (train: ``train_factor`` times more)
    queries: int = 0  # query images of the test and val splits; 0 → places // 2
    train_factor: float = 2.0
    street_length: float = 400.0  # metres
    db_spacing: float = 5.0  # metres between database views
    db_distance: float = 12.0  # metres from the facades
    width: int = 128
    height: int = 96
    seed: int = 0
    splits: tuple[str, ...] = ("train", "val", "test")  # e.g. ("test",) for a large evaluation-only set

    def counts(self, split: str) -> tuple[int, int]:
        queries = self.queries or max(1, self.places // 2)
        factor = self.train_factor if split == "train" else 1.0
        return int(round(self.places * factor)), int(round(queries * factor))


def _street_utm(split: str, street: int) -> tuple[np.ndarray, np.ndarray]:
    """Origin and unit direction of a street, in UTM metres."""
    rng = np.random.default_rng([SPLITS[split], street, 7])
    origin = np.array(
        [
            ORIGIN[0] + SPLITS[split] * 40 * GRID_M + (street % 40) * GRID_M,
            ORIGIN[1] + (street // 40) * GRID_M,
        ]
    )
    angle = rng.uniform(0, 2 * math.pi)
    return origin, np.array([math.cos(angle), math.sin(angle)])


def _file_name(utm: np.ndarray, heading: float, pitch: float, pano: str) -> str:
    lat = 40.44 + (utm[1] - ORIGIN[1]) / 111_320  # rough, for the name's lat/lon fields only
    lon = -79.99 + (utm[0] - ORIGIN[0]) / (111_320 * math.cos(math.radians(40.44)))
    return (
        f"@{utm[0]:010.2f}@{utm[1]:010.2f}@17@T@{lat:.6f}@{lon:.6f}@{pano}@@{heading:.0f}@{pitch:.0f}"
        f"@@@@synthetic@.jpg"
    )


def _render_street(job: tuple) -> None:
    cfg, split, street, db_xs, query_count, folder = job
    cfg = SynthConfig(**cfg)
    rng = np.random.default_rng([cfg.seed, SPLITS[split], street])
    facade = make_facade(cfg.street_length, rng)
    origin, direction = _street_utm(split, street)
    to_facade = np.array([-direction[1], direction[0]])
    street_heading = math.degrees(math.atan2(to_facade[0], to_facade[1]))
    size = (cfg.width, cfg.height)
    views = [
        ("database", i, View(x, cfg.db_distance, 2.0, 0.0, math.radians(12)), 0.15)
        for i, x in enumerate(db_xs)
    ]
    span = (db_xs[0], db_xs[-1]) if len(db_xs) else (0.0, cfg.street_length)
    for i in range(query_count):
        views.append(
            (
                "queries",
                i,
                View(
                    x=rng.uniform(*span),
                    distance=cfg.db_distance + rng.uniform(-4, 3),
                    height=rng.uniform(1.5, 2.6),
                    yaw=math.radians(rng.uniform(-25, 25)),
                    pitch=math.radians(rng.uniform(6, 18)),
                ),
                1.0,
            )
        )
    for part, i, view, strength in views:
        image = change_appearance(render(facade, view, size), rng, strength)
        camera = origin + view.x * direction - view.distance * to_facade
        name = _file_name(
            camera,
            (street_heading + math.degrees(view.yaw)) % 360,
            math.degrees(view.pitch),
            f"{split[:2]}{street:05d}{part[0]}{i:05d}",
        )
        image.save(Path(folder) / split / part / name, quality=int(rng.integers(75, 95)))


def generate(out: str | os.PathLike, cfg: SynthConfig = SynthConfig(), workers: int | None = None) -> Path:
    """Write a synthetic dataset to ``out`` (atomically: a temp folder renamed when complete)."""
    out = Path(out)
    cfg = replace(cfg, splits=tuple(cfg.splits))
    unknown = sorted(set(cfg.splits) - set(SPLITS))
    if unknown or not cfg.splits:
        raise DatasetError(f"synthetic splits must be among {', '.join(SPLITS)}, got {list(cfg.splits)}")
    if cfg.places < 1 or cfg.db_spacing <= 0 or cfg.street_length < cfg.db_spacing:
        raise DatasetError(
            f"invalid synthetic dataset settings {cfg}: need places ≥ 1 and a positive spacing"
        )
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    per_street = int(cfg.street_length // cfg.db_spacing)
    jobs, counts = [], {}
    for split in cfg.splits:
        n_db, n_q = cfg.counts(split)
        counts[split] = {"database": n_db, "queries": n_q}
        n_streets = math.ceil(n_db / per_street)
        for part in ("database", "queries"):
            (tmp / "images" / split / part).mkdir(parents=True, exist_ok=True)
        queries_per_street = np.bincount(
            np.random.default_rng([cfg.seed, SPLITS[split], 99]).integers(0, n_streets, size=n_q),
            minlength=n_streets,
        )
        for street in range(n_streets):
            n = min(per_street, n_db - street * per_street)
            xs = cfg.db_spacing / 2 + cfg.db_spacing * np.arange(n)
            jobs.append(
                (
                    asdict(cfg),
                    split,
                    street,
                    xs.tolist(),
                    int(queries_per_street[street]),
                    str(tmp / "images"),
                )
            )
    try:
        workers = workers or min(len(jobs), os.cpu_count() or 1)
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_render_street, jobs, chunksize=max(1, len(jobs) // (8 * workers))))
        else:
            for job in jobs:
                _render_street(job)
        atomic_write_json(
            tmp / MARKER, {"generator_version": GENERATOR_VERSION, "config": asdict(cfg), "counts": counts}
        )
        try:
            os.rename(tmp, out)
        except OSError:
            if not is_complete(out):  # someone else finished first: keep theirs; else a real error
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_complete(root: Path) -> bool:
    marker = read_marker(root)
    return marker is not None and marker.get("generator_version") == GENERATOR_VERSION


def ensure(root: Path, cfg: SynthConfig = SynthConfig()) -> Path:
    """Generate the dataset at ``root`` unless a complete one of this generator version is there."""
    if is_complete(root):
        return root
    marker = read_marker(root)
    if root.exists():
        why = "was made by an older generator" if marker else "is incomplete (no marker file)"
        log.warning("synthetic dataset %s %s: regenerating it", root, why)
        if marker:
            cfg = SynthConfig(**marker["config"])
        shutil.rmtree(root)
    log.info("generating the synthetic dataset in %s (one-off)", root)
    root.parent.mkdir(parents=True, exist_ok=True)
    return generate(root, cfg)


@register_dataset("synthetic", "embedded procedural streets, generated on first use (folder layout)")
def synthetic(options: DataConfig) -> FolderDataset:
    root = dataset_root(options, "synthetic")
    return FolderDataset("synthetic", ensure(root))
