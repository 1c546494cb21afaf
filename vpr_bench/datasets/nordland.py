"""Nordland as researchers keep it: one folder per season of ``images-XXXXX.png`` frames
(``<root>/{summer,winter,spring,fall}/``), and its three published protocols, each a registered name so
that a record says which one produced its figures.

- ``nordland-seqnet`` (seqNet, Garg & Milford, RA-L 2021): seqNet's struct files
  ``nordland_{train,val,test}_d-X_d2-Y.db`` hold 1×N positions in the 27,592-frame clean list; a query's
  positives are the database frames within ``posDistThr`` positions (test: 1, i.e. i−1, i, i+1).
  Test: spring database, fall queries (seqNet's reported test); train and val: summer, winter.
- ``nordland-pnv`` (Patch-NetVLAD, Hausler et al., CVPR 2021): the whole clean list, summer database,
  winter queries. Patch-NetVLAD places frame i at (i, i) with a radius of 10: |i − j|·√2 ≤ 10, i.e.
  |i − j| ≤ 7 frames — the rule used here, on 1-D positions.
- ``nordland-vprbench`` (VPR-Bench, Zaffar et al., IJCV 2021; the SALAD / GSV-Cities evaluations):
  27,592 references, 2,760 queries, query i correct at references 10i−1, 10i, 10i+1, as ground-truth
  lists (``ground_truth_new.npy`` with ``query/``, ``ref/``; or ``Nordland_{dbImages,qImages,gt}.npy``).

``nordland`` alone is datasets_vg's conversion in the folder layout (frames 2.38 m apart, 25 m): folder.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vpr_bench.config import DataConfig
from vpr_bench.datasets.base import VPRDataset, dataset_root
from vpr_bench.datasets.folder import list_images
from vpr_bench.datasets.lists import NpyListDataset, VPRBenchDataset
from vpr_bench.datasets.netvlad_mat import read_db_struct, struct_split
from vpr_bench.datasets.split import FRAMES, Split
from vpr_bench.errors import DatasetError
from vpr_bench.registry import register_dataset

SEASONS = ("summer", "winter", "spring", "fall")
SEQNET_SEASONS = {"train": ("summer", "winter"), "val": ("summer", "winter"), "test": ("spring", "fall")}
PNV_RADIUS = 7.0  # frames: Patch-NetVLAD's radius 10 on coordinates (i, i), since 7·√2 ≤ 10 < 8·√2
# The clean list as a file of frame names, one a line (Patch-NetVLAD's index list, or your own)
CLEAN_LISTS = ("nordland_clean.txt", "nordland_imageNames_index.txt")
FRAME = re.compile(r"images-\d{5}\.png")


def _places(options: DataConfig, root: Path) -> list[Path]:
    return [Path(d) for d in (options.struct_dir,) if d] + [root, root / "structFiles"]


def clean_frames(places: list[Path], frames_folder: Path) -> tuple[list[str], str]:
    """The clean list's frame names in order, and where they came from: the first names file of
    ``CLEAN_LISTS`` found in ``places`` (any folder before a name is ignored), else the sorted
    ``images-XXXXX.png`` frames in ``frames_folder``."""
    for place in places:
        for filename in CLEAN_LISTS:
            path = place / filename
            if path.is_file():
                names = [Path(line.strip()).name for line in path.read_text().splitlines() if line.strip()]
                if not names:
                    raise DatasetError(f"{path} lists no frames: expected one name (images-XXXXX.png) a line")
                return names, str(path)
    if not frames_folder.is_dir():
        raise DatasetError(
            f"{frames_folder} does not exist: Nordland is kept as <root>/<season>/images-XXXXX.png "
            f"({', '.join(SEASONS)}); pass --data-root"
        )
    names = [p.name for p in list_images(frames_folder) if FRAME.fullmatch(p.name)]
    if not names:
        raise DatasetError(f"{frames_folder} holds no images-XXXXX.png frames")
    return names, str(frames_folder)


class SeqNetNordland(VPRDataset):
    """seqNet's struct files over Nordland's season folders."""

    splits = ("train", "val", "test")

    def __init__(self, name: str, root: Path, options: DataConfig):
        self.name, self.root, self.options = name, Path(root), options

    def struct_path(self, split: str) -> Path:
        pattern = f"nordland_{split}_d-*_d2-*.db"
        places = _places(self.options, self.root)
        for place in places:
            found = sorted(place.glob(pattern))
            if len(found) > 1:
                names = ", ".join(p.name for p in found)
                raise DatasetError(f"{place} holds several {pattern} files ({names}); keep one there")
            if found:
                return found[0]
        raise DatasetError(
            f"seqNet struct file {pattern} not found in {', '.join(str(p) for p in places)}; "
            "pass --struct-dir (seqNet's structFiles/) or --data-root"
        )

    def load_split(self, split: str) -> Split:
        path = self.struct_path(split)
        s = read_db_struct(path)
        if s["positions"] != FRAMES:
            raise DatasetError(
                f"{path}: utmDb holds 2×N metres, not the 1×N frame positions of seqNet's Nordland structs"
            )
        database, queries = SEQNET_SEASONS[split]
        info = {"layout": "nordland", "struct_file": str(path), "seasons": f"{database} → {queries}"}
        folders = self.root / database, self.root / queries
        return struct_split(self.name, split, s, *folders, path, protocol=f"{self.name}-{split}", info=info)


class PatchNetVLADNordland(VPRDataset):
    """The clean list, summer against winter, frame i matching frames within 7 of it."""

    splits = ("test",)

    def __init__(self, name: str, root: Path, options: DataConfig):
        self.name, self.root, self.options = name, Path(root), options

    def load_split(self, split: str) -> Split:
        frames, source = clean_frames(_places(self.options, self.root), self.root / "summer")
        positions = np.arange(len(frames), dtype=np.float64).reshape(-1, 1)  # (N, 1) place in the list
        return Split(
            dataset=self.name,
            name=split,
            database_paths=[self.root / "summer" / f for f in frames],
            query_paths=[self.root / "winter" / f for f in frames],
            database_utm=positions,
            query_utm=positions.copy(),
            pos_radius=PNV_RADIUS,
            train_pos_radius=PNV_RADIUS,
            train_neg_radius=PNV_RADIUS,
            source=source,
            info={"layout": "nordland", "seasons": "summer → winter"},
            positions=FRAMES,
            protocol=self.name,
        )


class VPRBenchNordland(VPRDataset):
    """VPR-Bench's Nordland lists, read by the list readers and named as their protocol."""

    splits = ("test",)

    def __init__(self, name: str, root: Path):
        self.name, self.root = name, Path(root)

    def load_split(self, split: str) -> Split:
        if (self.root / "ground_truth_new.npy").is_file():
            reader: VPRDataset = VPRBenchDataset(self.name, self.root)
        elif (self.root / "Nordland_gt.npy").is_file():
            reader = NpyListDataset(self.root, "Nordland")
        else:
            raise DatasetError(
                f"{self.root} holds neither ground_truth_new.npy (VPR-Bench: with query/ and ref/) nor "
                "Nordland_gt.npy (with Nordland_dbImages.npy, Nordland_qImages.npy); pass --data-root"
            )
        loaded = reader.load_split(split)
        loaded.dataset, loaded.protocol = self.name, self.name
        return loaded


@register_dataset(
    "nordland-seqnet",
    "Nordland, seqNet's structs (1×N frame positions); train/val summer→winter, test spring→fall",
)
def nordland_seqnet(options: DataConfig) -> SeqNetNordland:
    return SeqNetNordland("nordland-seqnet", dataset_root(options, "nordland"), options)


@register_dataset("nordland-pnv", "Nordland, Patch-NetVLAD's: 27,592 summer vs 27,592 winter, ±7 frames")
def nordland_pnv(options: DataConfig) -> PatchNetVLADNordland:
    return PatchNetVLADNordland("nordland-pnv", dataset_root(options, "nordland"), options)


@register_dataset(
    "nordland-vprbench", "Nordland, VPR-Bench/SALAD's: 27,592 refs vs 2,760 queries, list ground truth"
)
def nordland_vprbench(options: DataConfig) -> VPRBenchNordland:
    return VPRBenchNordland("nordland-vprbench", dataset_root(options, "nordland-vprbench"))
