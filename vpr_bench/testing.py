"""Test helpers and pytest fixtures for vpr-bench and its plugins: tiny timm models, tiny images, data
built on the fly. A plugin's ``conftest.py`` imports what it needs from here, e.g.
``from vpr_bench.testing import isolated_cwd, synthetic_root, tiny_config  # noqa: F401``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from vpr_bench.config import resolve


def tiny_config(**overrides):
    """A RunConfig with timm's 62k-parameter test_resnet, 32×32 images and no worker processes."""
    values = {
        "model.backbone": "test_resnet",
        "model.pretrained": False,
        "data.image_size": (32, 32),
        "eval.num_workers": 0,
        "eval.batch_size": 64,
        "quiet": True,
        "eval.device": "cpu",
    }
    values.update(overrides)
    cfg = resolve("demo", values)
    if "model.backbone_stage" not in overrides:
        cfg.model.backbone_stage = None  # test_resnet's last stage, not the demo's cut
    return cfg


# A tiny training budget: 12 queries an epoch in batches of 4 (3 batches), 2 epochs, a checkpoint every
# 2 batches — enough to cross an epoch boundary and a mid-epoch checkpoint.
TINY_TRAINING = {
    "train.epochs": 2,
    "train.batch_size": 4,
    "train.negatives": 2,
    "train.negative_samples": 20,
    "train.checkpoint_every": 2,
    "train.queries_per_epoch": 12,
}


# The same tiny set-up as CLI options: timm's test_resnet, 32×32 images, no workers, CPU, no bars.
TINY_CLI = [
    *("--backbone", "test_resnet", "--no-pretrained", "--image-size", "32x32"),
    *("--num-workers", "0", "--device", "cpu", "--quiet"),
]


def cli_main(args: list[str] | None = None) -> None:
    """The ``vpr-bench`` entry point (errors as one line and an exit code), for tests that call it."""
    from vpr_bench.cli import main

    main(args)


def load_rgb(path: str | Path):
    """An image as the datasets read it (RGB), for tests that feed a model by hand."""
    from vpr_bench.datasets.images import load_rgb as read

    return read(path)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """``vpr-bench ARGS`` in-process: (exit code, stdout, stderr)."""
    from vpr_bench.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def write_image(path: Path, colour=(128, 128, 128), size=(16, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, tuple(int(c) for c in colour)).save(path)


def utm_name(east: float, north: float, tag: str = "") -> str:
    return f"@{east:010.2f}@{north:010.2f}@17@T@40.44@-79.99@{tag}@@0@0@@@@test@.jpg"


def make_folder_dataset(root: Path, split: str, db_utm: np.ndarray, q_utm: np.ndarray) -> None:
    for part, coords in (("database", db_utm), ("queries", q_utm)):
        for i, (e, n) in enumerate(coords):
            write_image(
                root / "images" / split / part / utm_name(e, n, f"{part[0]}{i}"), colour=(i * 7 % 255, 90, 30)
            )


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic dataset generated once for the session."""
    from vpr_bench.datasets.synthetic import SynthConfig, generate

    root = tmp_path_factory.mktemp("data") / "synthetic"
    return generate(root, SynthConfig(places=40, queries=20, street_length=100, seed=3), workers=1)


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty default data folder (``$VPR_BENCH_DATA``) for this test."""
    monkeypatch.setenv("VPR_BENCH_DATA", str(tmp_path / "datasets"))
    return tmp_path / "datasets"


@pytest.fixture(autouse=True)
def isolated_cwd(tmp_path, tmp_path_factory, monkeypatch):
    """Relative defaults (results/, datasets/) land in the test's own folder, never the project's; the
    default image cache in a folder of the test's own beside it (not inside: tests glob their folder),
    never the user's ~/.cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VPR_BENCH_DATA", str(tmp_path / "datasets"))
    monkeypatch.setenv("VPR_BENCH_IMAGE_CACHE", str(tmp_path_factory.mktemp("image-cache")))


@pytest.fixture
def opened_images(monkeypatch) -> list[str]:
    """Every image file PIL opens from now on, in order (with ``eval.num_workers`` 0: in this process)."""
    calls, real = [], Image.open

    def counting(fp, *args, **kwargs):
        calls.append(str(fp))
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    return calls


# ---- reference models: weights rebuilt from key names (the fixtures under tests/data) --------


def recipe_tensor(key: str, shape, dtype: str = "float32"):
    """The deterministic tensor the reference fixtures give the state-dict entry ``key`` of ``shape``."""
    import math
    import zlib

    import torch

    shape = tuple(shape)
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if key.endswith("running_var"):
        value = 0.5 + torch.rand(shape, generator=g)
    elif len(shape) >= 2:
        value = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
    elif len(shape) == 1 and key.endswith(".weight"):
        value = 1 + 0.1 * torch.randn(shape, generator=g)
    else:
        value = 0.1 * torch.randn(shape, generator=g)
    return value.to(getattr(torch, dtype))


def reference_input(height: int, width: int, batch: int = 2):
    """The fixtures' raw input in [0, 1): ``torch.rand(2, 3, H, W)`` from seed 20240401."""
    import torch

    g = torch.Generator().manual_seed(20240401)
    return torch.rand(batch, 3, height, width, generator=g)


def relative_error(actual, expected) -> float:
    """max |actual − expected| / max |expected|: an array compared at its own scale."""
    import numpy as np

    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))


# ---- NetVLAD dbStruct files, as the real ones are laid out (tests of the .mat readers) ------------------

NETVLAD_FIELD_ORDER = (
    "whichSet",
    "dbImageFns",
    "utmDb",
    "qImageFns",
    "utmQ",
    "numImages",
    "numQueries",
    "posDistThr",
    "posDistSqThr",
    "nonTrivPosDistSqThr",
)


def write_db_struct(
    path: str | Path,
    which_set: str,
    db_images: list[str],
    db_utm: np.ndarray,
    q_images: list[str],
    q_utm: np.ndarray,
    pos_dist: float = 25.0,
    non_triv_dist: float = 10.0,
    field_order: tuple[str, ...] = NETVLAD_FIELD_ORDER,
    extra: dict | None = None,
) -> None:
    """Write a NetVLAD dbStruct (MATLAB names, cells of paths, 2×N UTM) in ``field_order``."""
    values = {
        "whichSet": which_set,
        "dbImageFns": _cell(db_images),
        "utmDb": np.asarray(db_utm, float).T,
        "qImageFns": _cell(q_images),
        "utmQ": np.asarray(q_utm, float).T,
        "numImages": len(db_images),
        "numQueries": len(q_images),
        "posDistThr": pos_dist,
        "posDistSqThr": pos_dist**2,
        "nonTrivPosDistSqThr": non_triv_dist**2,
        **(extra or {}),
    }
    struct = np.empty((1, 1), dtype=[(name, object) for name in field_order])
    for name in field_order:
        struct[0, 0][name] = values[name]
    scipy.io.savemat(str(path), {"dbStruct": struct})


def _cell(strings: list[str]) -> np.ndarray:
    cell = np.empty((len(strings), 1), dtype=object)
    cell[:, 0] = strings
    return cell


# ---- GSV-Cities as downloaded: Dataframes/<City>.csv and Images/<City>/ (tests of place batches) -------

GSV_HEADER = ("place_id", "year", "month", "northdeg", "city_id", "lat", "lon", "panoid")


def make_gsv_cities(
    root: str | Path,
    places: dict[str, list[int]] | None = None,
    index_column: tuple[str, ...] = (),
    size: tuple[int, int] = (32, 32),
) -> dict[str, list[tuple[int, Path]]]:
    """A tiny GSV-Cities tree: for each city, places with the given numbers of images (default: three
    cities, places of 4–6 images; Boston's place 2 has 3, fewer than K = 4), each image the city's
    pattern, changed a little for its place, under its own strong noise (places not told apart at once);
    the CSVs of the cities in ``index_column`` start with pandas' unnamed index column. Latitudes are
    written with a trailing zero ("42.35010"): the file name has pandas' text ("42.3501").
    Returns city → [(place id, image path)]."""
    root = Path(root)
    places = places or {"London": [4, 5, 6, 4], "Boston": [5, 4, 3, 6], "OSL": [6, 4, 5, 4]}
    written: dict[str, list[tuple[int, Path]]] = {}
    for c, (city, sizes) in enumerate(places.items()):
        (root / "Images" / city).mkdir(parents=True, exist_ok=True)
        (root / "Dataframes").mkdir(parents=True, exist_ok=True)
        lines, written[city] = [], []
        base = np.random.default_rng([c]).integers(60, 196, size=(4, 4, 3))  # one look for the city
        for place, count in enumerate(sizes):
            pattern = base + np.random.default_rng([c, place]).integers(-40, 41, size=(4, 4, 3))
            for i in range(count):
                year, month, deg = 2010 + i, 1 + (7 * i) % 12, (45 * i) % 360
                lat, lon, pano = f"{42 + c}.{place:02d}{i}10", f"-71.0{place}{i}", f"pano{c}{place}x{i}_-Z"
                numbers = f"{place:07d}_{year:04d}_{month:02d}_{deg:03d}_{float(lat)}_{float(lon)}"
                name = f"{city}_{numbers}_{pano}.jpg"
                noise = np.random.default_rng([c, place, i]).integers(-50, 51, size=(*size, 3))
                pixels = np.kron(pattern, np.ones((size[0] // 4, size[1] // 4, 1))) + noise
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / "Images" / city / name)
                lines.append([str(place), str(year), str(month), str(deg), city, lat, lon, pano])
                written[city].append((place, root / "Images" / city / name))
        header = list(GSV_HEADER)
        if city in index_column:
            header, lines = ["", *header], [[str(i), *line] for i, line in enumerate(lines)]
        text = "\n".join(",".join(row) for row in [header, *lines]) + "\n"
        (root / "Dataframes" / f"{city}.csv").write_text(text)
    return written
