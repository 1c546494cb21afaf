"""Readers whose ground truth is explicit lists of correct database images (no coordinates).

- VPR-Bench (Zaffar et al., IJCV 2021): ``<root>/{query,ref}/*.jpg`` + ``ground_truth_new.npy``, an object
  array of rows ``[query_index, [correct reference indices]]``. The real Corridor dataset ships with
  vpr-bench in this layout (``corridor``).
- GSV-Cities / MixVPR / SALAD evaluation lists: ``<name>_dbImages.npy``, ``<name>_qImages.npy`` (image
  paths relative to the folder holding them) and ``<name>_gt.npy`` (per query, the correct database
  indices).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vpr_bench.datasets.base import DatasetOptions, VPRDataset, default_data_dir
from vpr_bench.datasets.folder import list_images
from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.datasets.split import Split
from vpr_bench.errors import DatasetError
from vpr_bench.registry import register_dataset

PACKAGED = Path(__file__).resolve().parent.parent / "data"


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"{path} not found: expected {what}")
    try:
        return np.load(path, allow_pickle=True)  # object arrays of index lists need pickle; local files only
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path} is not a readable .npy file ({exc})") from None


def _as_index_lists(raw, path: Path) -> list[np.ndarray]:
    try:
        return [np.asarray(x, dtype=np.int64).ravel() for x in raw]
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: expected one list of database indices per query") from None


def _list_split(
    dataset: str, split: str, database: list, queries: list, lists: list, gt_path: Path, layout: str
) -> Split:
    """A split whose ground truth is the given per-query index lists (range-checked)."""
    try:
        gt = GroundTruth.from_lists(lists, len(database))
    except ValueError as exc:
        raise DatasetError(f"{gt_path}: {exc} ({len(database)} database images)") from None
    return Split(
        dataset,
        split,
        database,
        queries,
        explicit_ground_truth=gt,
        source=str(gt_path),
        info={"layout": layout},
    )


class VPRBenchDataset(VPRDataset):
    splits = ("test",)

    def __init__(self, name: str, root: Path):
        self.name, self.root = name, Path(root)

    def load_split(self, split: str) -> Split:
        folders = {part: self.root / part for part in ("ref", "query")}
        for folder in folders.values():
            if not folder.is_dir():
                raise DatasetError(
                    f"{folder} does not exist: a VPR-Bench dataset has query/, ref/ and ground_truth_new.npy"
                )
        database, queries = list_images(folders["ref"]), list_images(folders["query"])
        gt_path = self.root / "ground_truth_new.npy"
        raw = _load_npy(gt_path, "VPR-Bench ground truth (rows of [query index, [reference indices]])")
        if raw.ndim != 2 or raw.shape[1] != 2:
            raise DatasetError(f"{gt_path}: shape {raw.shape}, expected (queries, 2) rows of [index, [refs]]")
        lists: list = [[] for _ in queries]
        for query_index, refs in raw:
            if not 0 <= int(query_index) < len(queries):
                raise DatasetError(f"{gt_path}: query index {query_index} but {len(queries)} query images")
            lists[int(query_index)] = np.asarray(refs, dtype=np.int64).ravel()
        return _list_split(self.name, split, database, queries, lists, gt_path, "vpr-bench")


class NpyListDataset(VPRDataset):
    splits = ("test",)

    def __init__(self, root: Path, list_name: str):
        self.root, self.list_name = Path(root), list_name
        self.name = f"npylist-{list_name}"

    def load_split(self, split: str) -> Split:
        files = {k: self.root / f"{self.list_name}_{k}.npy" for k in ("dbImages", "qImages", "gt")}
        database = [self.root / str(p) for p in _load_npy(files["dbImages"], "database image paths")]
        queries = [self.root / str(p) for p in _load_npy(files["qImages"], "query image paths")]
        lists = _as_index_lists(
            _load_npy(files["gt"], "per-query lists of correct database indices"), files["gt"]
        )
        if len(lists) != len(queries):
            raise DatasetError(f"{files['gt']}: {len(lists)} ground-truth rows for {len(queries)} queries")
        return _list_split(self.name, split, database, queries, lists, files["gt"], "npylist")


@register_dataset("vprbench:", "any dataset in the VPR-Bench layout: query/, ref/, ground_truth_new.npy")
def vprbench(path: str, options: DatasetOptions) -> VPRBenchDataset:
    return VPRBenchDataset(f"vprbench-{Path(path).resolve().name}", Path(path))


@register_dataset(
    "npylist:", "GSV-Cities/MixVPR lists: npylist:<folder>:<name> → <name>_{dbImages,qImages,gt}.npy"
)
def npylist(spec: str, options: DatasetOptions) -> NpyListDataset:
    folder, sep, name = spec.rpartition(":")
    if not sep or not folder or not name:
        raise DatasetError(
            f"npylist:{spec}: expected npylist:<folder>:<name>, e.g. npylist:/data/msls:msls_val"
        )
    return NpyListDataset(Path(folder), name)


@register_dataset(
    "corridor", "real indoor corridor, 111 queries / 111 refs (Milford 2013), ships with vpr-bench"
)
def corridor(options: DatasetOptions) -> VPRBenchDataset:
    """``datasets/corridor`` (or ``--data-root``) if present, else the copy inside the package."""
    root = Path(options.data_root) if options.data_root else default_data_dir() / "corridor"
    return VPRBenchDataset("corridor", root if root.is_dir() else PACKAGED / "corridor")
