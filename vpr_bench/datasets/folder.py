"""Reader for the deep-visual-geo-localization benchmark layout (also VPR-datasets-downloader's).

``<root>/images/{train,val,test}/{database,queries}/*.jpg`` with UTM in the file names:
``@<east>@<north>@<zone>@<letter>@<lat>@<lon>@<pano>@<tile>@<heading>@<pitch>@<roll>@<height>@<time>@<note>@``.
A split none of whose image names carries coordinates (a folder of one's own images) has no ground truth:
it is ranked with ``--no-labels``, not scored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vpr_bench.config import DataConfig
from vpr_bench.datasets.base import VPRDataset, dataset_root
from vpr_bench.datasets.split import Split
from vpr_bench.errors import DatasetError
from vpr_bench.registry import register_dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLIT_NAMES = ("train", "val", "test")
# Datasets that VPR-datasets-downloader converts to this layout; each reads datasets/<name>/. (msls: msls.py
# reads MSLS as downloaded, and this layout too.)
FOLDER_DATASETS = {
    "st_lucia": "St Lucia",
    "sf_xl": "San Francisco eXtra Large",
    "tokyo_xs": "Tokyo-XS",
    "san_francisco": "San Francisco Landmark",
    "nordland": "Nordland",
    "amstertime": "AmsterTime",
    "eynsham": "Eynsham",
}


def list_images(folder: Path) -> list[Path]:
    with os.scandir(folder) as it:
        names = sorted(e.name for e in it if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
    return [folder / n for n in names]


def utm_from_names(paths: list[Path]) -> np.ndarray:
    """(N, 2) east, north from ``@east@north@...`` file names."""
    utm = np.empty((len(paths), 2), dtype=np.float64)
    for i, path in enumerate(paths):
        fields = path.name.split("@")
        try:
            utm[i] = float(fields[1]), float(fields[2])
        except (IndexError, ValueError):
            raise DatasetError(
                f"cannot parse UTM from file name {path}: expected '@<east>@<north>@...' "
                "(deep-visual-geo-localization layout)"
            ) from None
    return utm


class FolderDataset(VPRDataset):
    def __init__(self, name: str, root: Path):
        self.name = name
        self.root = Path(root)
        images = self.root / "images"
        if not images.is_dir():
            raise DatasetError(
                f"{images} does not exist: a folder dataset needs <root>/images/{{train,val,test}}/"
                "{database,queries}/ (see datasets/README.md)"
            )
        self.splits = tuple(s for s in SPLIT_NAMES if (images / s).is_dir())
        if not self.splits:
            raise DatasetError(f"{images} has none of the split folders {', '.join(SPLIT_NAMES)}")

    def load_split(self, split: str) -> Split:
        folder = self.root / "images" / split
        parts = {}
        for part in ("database", "queries"):
            if not (folder / part).is_dir():
                raise DatasetError(f"{folder / part} does not exist: expected {folder}/{{database,queries}}/")
            parts[part] = list_images(folder / part)
            if not parts[part]:
                raise DatasetError(
                    f"{folder / part} holds no .jpg/.jpeg/.png images: the {split} split is empty"
                )
        # images named without coordinates (a folder of one's own): no ground truth, ranked only
        located = any("@" in p.name for images in parts.values() for p in images)
        return Split(
            dataset=self.name,
            name=split,
            database_paths=parts["database"],
            query_paths=parts["queries"],
            database_utm=utm_from_names(parts["database"]) if located else None,
            query_utm=utm_from_names(parts["queries"]) if located else None,
            source=str(folder),
            info={"layout": "folder"},
            no_labels="" if located else f"{folder}: no image name carries UTM (@<east>@<north>@...)",
        )


@register_dataset(
    "folder:", "any dataset in the folder layout: images/<split>/{database,queries}, UTM in names"
)
def folder_dataset(path: str, options: DataConfig) -> FolderDataset:
    root = Path(path)
    return FolderDataset(f"folder-{root.resolve().name}", root)


def _register_folder_name(name: str, title: str) -> None:
    @register_dataset(name, f"{title} in the folder layout (datasets/{name}/images/...)")
    def build(options: DataConfig) -> FolderDataset:
        return FolderDataset(name, dataset_root(options, name))


for _name, _title in FOLDER_DATASETS.items():
    _register_folder_name(_name, _title)
