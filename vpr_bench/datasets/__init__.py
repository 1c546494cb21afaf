"""Dataset readers. Importing this package registers the built-in ones."""

from vpr_bench.config import DataConfig
from vpr_bench.datasets import (  # noqa: F401  (registration)
    folder,
    gsv_cities,
    lists,
    msls,
    netvlad_mat,
    nordland,
    synthetic,
)
from vpr_bench.datasets.base import VPRDataset, default_data_dir
from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.datasets.split import Split
from vpr_bench.registry import DATASETS


def build_dataset(spec: str, options: DataConfig | None = None) -> VPRDataset:
    """``pitts30k``, ``synthetic``, ``folder:/path/to/root``, or any plugin's dataset."""
    return DATASETS.build(spec, options or DataConfig())


def load_split(data: DataConfig, split: str) -> tuple[str, Split]:
    """The dataset's ``split`` as ``data`` configures it, checked (images present and readable);
    (dataset name, split)."""
    dataset = build_dataset(data.dataset, data)
    loaded = dataset.split(split, data)
    loaded.validate()
    return dataset.name, loaded


__all__ = [
    "GroundTruth",
    "Split",
    "VPRDataset",
    "build_dataset",
    "default_data_dir",
    "load_split",
]
