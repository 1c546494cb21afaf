"""Reader for NetVLAD's ``.mat`` dbStruct files (Pittsburgh 30k/250k, Tokyo 24/7, TokyoTM).

Fields are read by name, in either spelling (MATLAB's ``dbImageFns``/``numImages`` or the Python ports'
``dbImage``/``numDb``) and in any order; only a struct without names is read by position (10 fields,
or 12 for TokyoTM). seqNet's structs (13 fields: the ten plus ``dataset``, ``gpsDb``, ``gpsQ``) read by
name too; their Nordland files hold 1×N frame positions in ``utmDb``/``utmQ`` instead of 2×N metres,
which the shape tells (``positions``: ``frame index`` vs ``metres (UTM)``). Image paths are resolved in
NetVLAD's layout (database relative to the root, queries under ``queries_real/``) or the TSCM release's
(``database/`` and ``query/``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from vpr_bench.config import DataConfig
from vpr_bench.datasets.base import LAYOUTS, VPRDataset, dataset_root
from vpr_bench.datasets.folder import FolderDataset
from vpr_bench.datasets.split import FRAMES, METRES, Split
from vpr_bench.errors import DatasetError
from vpr_bench.registry import register_dataset

# canonical name → accepted spellings
FIELDS = {
    "whichSet": ("whichSet",),
    "dbImage": ("dbImageFns", "dbImage"),
    "utmDb": ("utmDb",),
    "qImage": ("qImageFns", "qImage"),
    "utmQ": ("utmQ",),
    "numDb": ("numImages", "numDb"),
    "numQ": ("numQueries", "numQ"),
    "posDistThr": ("posDistThr",),
    "posDistSqThr": ("posDistSqThr",),
    "nonTrivPosDistSqThr": ("nonTrivPosDistSqThr",),
}
POSITIONAL = {
    10: (
        "whichSet",
        "dbImage",
        "utmDb",
        "qImage",
        "utmQ",
        "numDb",
        "numQ",
        "posDistThr",
        "posDistSqThr",
        "nonTrivPosDistSqThr",
    ),
    12: (
        "whichSet",
        "dbImage",
        "utmDb",
        "dbTimeStamp",
        "qImage",
        "utmQ",
        "qTimeStamp",
        "numDb",
        "numQ",
        "posDistThr",
        "posDistSqThr",
        "nonTrivPosDistSqThr",
    ),
}
QUERY_DIRS = {"netvlad": ("queries_real",), "tscm": ("query",)}
DATABASE_DIRS = {"netvlad": ("",), "tscm": ("database",)}


def read_db_struct(path: str | Path) -> dict:
    """The dbStruct of ``path`` as plain Python values, keyed by the canonical names above."""
    path = Path(path)
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises ValueError, MatReadError, OSError... for bad files
        raise DatasetError(f"{path} is not a readable MATLAB .mat file ({exc}); re-download it") from None
    if "dbStruct" not in mat:
        keys = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise DatasetError(f"{path} has no 'dbStruct' variable (found: {keys}); expected a NetVLAD dbStruct")
    struct = mat["dbStruct"]
    raw = _by_name(struct, path) if struct.dtype.names else _by_position(struct, path)
    try:
        values = {
            "whichSet": _string(raw["whichSet"]),
            "dbImage": [_string(f) for f in np.asarray(raw["dbImage"]).ravel()],
            "qImage": [_string(f) for f in np.asarray(raw["qImage"]).ravel()],
            "numDb": int(np.asarray(raw["numDb"]).item()),
            "numQ": int(np.asarray(raw["numQ"]).item()),
            "posDistThr": float(np.asarray(raw["posDistThr"]).item()),
            "posDistSqThr": float(np.asarray(raw["posDistSqThr"]).item()),
            "nonTrivPosDistSqThr": float(np.asarray(raw["nonTrivPosDistSqThr"]).item()),
        }
        values["utmDb"], db_unit = _coordinates(raw["utmDb"], values["numDb"])
        values["utmQ"], q_unit = _coordinates(raw["utmQ"], values["numQ"])
        if db_unit != q_unit:
            raise ValueError(f"utmDb holds {db_unit} but utmQ {q_unit}")
        values["positions"] = db_unit
        for stamp in ("dbTimeStamp", "qTimeStamp"):  # TokyoTM's extra fields
            if stamp in raw:
                values[stamp] = np.asarray(raw[stamp], dtype=np.float64).ravel()
        for gps in ("gpsDb", "gpsQ"):  # seqNet's: 2×N (lat; lon) → (N, 2); its ``dataset`` name is not needed
            if gps in raw:
                values[gps] = np.asarray(raw[gps], dtype=np.float64).reshape(2, -1).T
    except (ValueError, TypeError, IndexError) as exc:
        raise DatasetError(f"{path}: a dbStruct field has an unexpected type or shape ({exc})") from None
    for names, count, coords in (("dbImage", "numDb", "utmDb"), ("qImage", "numQ", "utmQ")):
        if not len(values[names]) == values[count] == len(values[coords]):
            raise DatasetError(
                f"{path}: {len(values[names])} {names} names, {count}={values[count]} and "
                f"{len(values[coords])} {coords} coordinates disagree; the file is damaged or not a dbStruct"
            )
    return values


def _by_name(struct: np.ndarray, path: Path) -> dict:
    names = struct.dtype.names
    record = struct.ravel()[0]
    raw = {}
    for canonical, spellings in FIELDS.items():
        found = [s for s in spellings if s in names]
        if not found:
            raise DatasetError(
                f"{path}: dbStruct has no field {' or '.join(spellings)} (fields: {', '.join(names)})"
            )
        raw[canonical] = record[found[0]]
    for optional in ("dbTimeStamp", "qTimeStamp", "gpsDb", "gpsQ"):
        if optional in names:
            raw[optional] = record[optional]
    return raw


def _by_position(struct: np.ndarray, path: Path) -> dict:
    items = list(struct.ravel())
    if len(items) == 1 and isinstance(items[0], np.ndarray) and items[0].dtype == object:
        items = list(items[0].ravel())
    if len(items) not in POSITIONAL:
        raise DatasetError(
            f"{path}: unnamed dbStruct with {len(items)} fields; expected 10 (NetVLAD) or 12 (TokyoTM)"
        )
    return dict(zip(POSITIONAL[len(items)], items, strict=True))


def _string(value) -> str:
    value = np.asarray(value)
    while value.dtype == object and value.size == 1:
        value = np.asarray(value.ravel()[0])
    return str(value.ravel()[0]) if value.ndim else str(value)


def _coordinates(value, count: int) -> tuple[np.ndarray, str]:
    """(N, 2) metres from NetVLAD's 2×N UTM (N×2 from other writers is accepted), or (N, 1) frame
    positions from seqNet's 1×N rows; ``count`` settles a 1×2 array."""
    coords = np.asarray(value, dtype=np.float64)
    if coords.ndim != 2:
        raise ValueError(f"UTM array of shape {coords.shape}, expected 2×N metres or 1×N positions")
    if coords.shape[0] == 2:
        return coords.T, METRES
    if coords.shape[0] == 1 and (coords.shape[1] != 2 or count == 2):
        return coords.T, FRAMES
    if coords.shape[1] == 2:
        return coords, METRES
    raise ValueError(f"UTM array of shape {coords.shape}, expected 2×N metres or 1×N positions")


def struct_split(
    dataset: str, split: str, s: dict, database_dir: Path, query_dir: Path, path: Path, **fields
) -> Split:
    """The split a read dbStruct ``s`` describes, images under the given folders. Its radii: positives
    within ``posDistThr`` (evaluation; training negatives never closer), non-trivial training positives
    within √``nonTrivPosDistSqThr``, in the struct's own unit (metres, or frames for seqNet's Nordland)."""
    return Split(
        dataset=dataset,
        name=split,
        database_paths=[database_dir / f for f in s["dbImage"]],
        query_paths=[query_dir / f for f in s["qImage"]],
        database_utm=s["utmDb"],
        query_utm=s["utmQ"],
        pos_radius=s["posDistThr"],
        train_neg_radius=s["posDistThr"],
        train_pos_radius=float(np.sqrt(s["nonTrivPosDistSqThr"])),
        source=str(path),
        positions=s["positions"],
        **fields,
    )


class MatDataset(VPRDataset):
    """A dataset described by NetVLAD dbStruct files, one per split."""

    def __init__(
        self,
        name: str,
        struct_files: dict[str, str],
        options: DataConfig,
        query_dirs: tuple[str, ...] = ("queries_real",),
        cutouts_per_panorama: int | None = None,
    ):
        if options.layout not in LAYOUTS:
            raise DatasetError(f"--layout {options.layout!r} is not one of {', '.join(LAYOUTS)}")
        self.name = name
        self.root = dataset_root(options, name)
        self.struct_files = struct_files
        self.splits = tuple(struct_files)
        self.options = options
        self.query_dirs = {"netvlad": query_dirs, "tscm": QUERY_DIRS["tscm"]}
        self.cutouts_per_panorama = cutouts_per_panorama

    def struct_path(self, split: str) -> Path:
        filename = self.struct_files[split]
        places = [Path(d) for d in (self.options.struct_dir,) if d] + [self.root, self.root / "datasets"]
        for place in places:
            if (place / filename).is_file():
                return place / filename
        raise DatasetError(
            f"structure file {filename} not found in {', '.join(str(p) for p in places)}; "
            f"pass --data-root or --struct-dir (see datasets/README.md)"
        )

    def load_split(self, split: str) -> Split:
        path = self.struct_path(split)
        s = read_db_struct(path)
        layout, db_dir, q_dir = self._resolve_layout(s["dbImage"][0], s["qImage"][0], path)
        groups = None
        if self.cutouts_per_panorama:
            if s["numDb"] % self.cutouts_per_panorama:
                raise DatasetError(
                    f"{path}: {s['numDb']} database images is not a multiple of "
                    f"{self.cutouts_per_panorama} cut-outs per panorama"
                )
            groups = np.arange(s["numDb"]) // self.cutouts_per_panorama
        info = {"layout": layout, "struct_file": str(path), "whichSet": s["whichSet"]}
        info.update({k: s[k] for k in ("dbTimeStamp", "qTimeStamp") if k in s})
        return struct_split(self.name, split, s, db_dir, q_dir, path, database_groups=groups, info=info)

    def _resolve_layout(self, first_db: str, first_q: str, struct: Path) -> tuple[str, Path, Path]:
        layouts = ("netvlad", "tscm") if self.options.layout == "auto" else (self.options.layout,)
        tried = []
        for layout in layouts:
            for db_sub in DATABASE_DIRS[layout]:
                for q_sub in self.query_dirs[layout]:
                    db_dir, q_dir = self.root / db_sub, self.root / q_sub
                    if (db_dir / first_db).is_file() and (q_dir / first_q).is_file():
                        return layout, db_dir, q_dir
                    tried += [str(db_dir / first_db), str(q_dir / first_q)]
        raise DatasetError(
            f"images of {struct.name} not found under {self.root} (tried {', '.join(tried)}); "
            "check --data-root, or --layout netvlad|tscm"
        )


def _mat_or_folder(name: str, struct_files: dict[str, str], options: DataConfig, **kwargs) -> VPRDataset:
    """The .mat reader, or the folder reader when the root is in the folder layout and has no .mat."""
    dataset = MatDataset(name, struct_files, options, **kwargs)
    has_struct = any(
        (p / f).is_file()
        for f in struct_files.values()
        for p in (dataset.root, dataset.root / "datasets", Path(options.struct_dir or dataset.root))
    )
    if not has_struct and (dataset.root / "images").is_dir():
        return FolderDataset(name, dataset.root)
    return dataset


@register_dataset("pitts30k", "Pittsburgh 30k (NetVLAD .mat + images, or folder layout); train/val/test")
def pitts30k(options: DataConfig) -> VPRDataset:
    return _mat_or_folder("pitts30k", {s: f"pitts30k_{s}.mat" for s in ("train", "val", "test")}, options)


@register_dataset("pitts250k", "Pittsburgh 250k (NetVLAD .mat + images, or folder layout); train/val/test")
def pitts250k(options: DataConfig) -> VPRDataset:
    return _mat_or_folder("pitts250k", {s: f"pitts250k_{s}.mat" for s in ("train", "val", "test")}, options)


@register_dataset("tokyo247", "Tokyo 24/7 (NetVLAD tokyo247.mat + images, or folder layout); test only")
def tokyo247(options: DataConfig) -> VPRDataset:
    return _mat_or_folder(
        "tokyo247",
        {"test": "tokyo247.mat"},
        options,
        query_dirs=("247query_v3", "query", "queries_real"),
        cutouts_per_panorama=12,  # NetVLAD's nnSearchPostprocess: a panorama counts once in the ranking
    )


@register_dataset("tokyotm", "Tokyo Time Machine (NetVLAD tokyoTM_{train,val}.mat, 12 fields) + images")
def tokyotm(options: DataConfig) -> VPRDataset:
    # TokyoTM's queries are drawn from the same image collection as its database
    files = {s: f"tokyoTM_{s}.mat" for s in ("train", "val")}
    return _mat_or_folder("tokyotm", files, options, query_dirs=("", "queries_real", "query"))
