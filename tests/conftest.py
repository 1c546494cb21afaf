"""Shared fixtures (in ``vpr_bench.testing``, so plugins' tests use the same ones) and test data."""

from pathlib import Path

from vpr_bench import load_all
from vpr_bench.testing import (  # noqa: F401  (fixtures and helpers)
    data_dir,
    isolated_cwd,
    make_folder_dataset,
    opened_images,
    synthetic_root,
    tiny_config,
    utm_name,
    write_image,
)

DATA = Path(__file__).parent / "data"

load_all()  # the registries are filled at the entry points: for the tests, here
