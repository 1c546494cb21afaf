"""The decoded-image cache: descriptors through it are those from the files, bit for bit; a warm pass
opens no image file; a changed file is decoded again, alone; a killed fill leaves whole entries only; a
full disk is one warning (the default folder) or one line naming the folder and the size (a given one)."""

import errno
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vpr_bench._io import WriteError
from vpr_bench.config import DataConfig
from vpr_bench.datasets import image_cache
from vpr_bench.datasets.image_cache import ImageCache, cache_folder
from vpr_bench.datasets.images import data_transform, eval_transform
from vpr_bench.evaluation.descriptors import extract
from vpr_bench.methods import build_method
from vpr_bench.testing import tiny_config

CPU = torch.device("cpu")
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def write_images(folder: Path, count: int = 6) -> list[Path]:
    """Noise images of two sizes, JPEG and PNG."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        height, width = (40, 52) if i % 2 else (36, 30)
        paths.append(folder / f"{i}.{'jpg' if i % 3 else 'png'}")
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_method(tiny_config(**{"model.method": "gem"}).model).eval()


def describe(model, paths, transform) -> np.ndarray:
    return extract(model, paths, transform, CPU, batch_size=4, num_workers=0, quiet=True)[0]


ORDERS = {
    "resize-first": ((24, 32), "resize-first", "bilinear"),
    "resize-first-bicubic": ((24, 32), "resize-first", "bicubic"),
    "tensor-resize-first": ((24, 32), "tensor-resize-first", "bilinear"),
    "normalize-first": ((24, 32), "normalize-first", "bilinear"),
    "native": ((0, 0), "resize-first", "bilinear"),
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_descriptors_through_the_cache_are_those_from_the_files_bit_for_bit(
    order, model, tmp_path, opened_images
):
    size, preprocess, interpolation = ORDERS[order]
    paths = write_images(tmp_path)
    plain = eval_transform(size, MEAN, STD, preprocess, interpolation)
    cached = plain.cached_in(ImageCache(tmp_path / "cache", plain.stage))
    from_files = describe(model, paths, plain)
    cold = describe(model, paths, cached)  # decodes each image and writes its entry
    opened_images.clear()
    warm = describe(model, paths, cached)
    assert opened_images == []  # the warm pass reads the entries, not the image files
    assert np.array_equal(cold, from_files) and np.array_equal(warm, from_files)
    assert len([p for p in (tmp_path / "cache").rglob("*") if p.is_file()]) == len(paths)  # one entry each


def test_a_changed_image_is_decoded_again_and_only_that_one(model, tmp_path, opened_images):
    paths = write_images(tmp_path)
    plain = eval_transform((24, 32), MEAN, STD)
    cached = plain.cached_in(ImageCache(tmp_path / "cache", plain.stage))
    describe(model, paths, cached)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (36, 30, 3), dtype=np.uint8)).save(paths[0])  # new content
    opened_images.clear()
    after_edit = describe(model, paths, cached)
    assert opened_images == [str(paths[0])]
    assert np.array_equal(after_edit, describe(model, paths, plain))  # the new image's descriptor
    info = os.stat(paths[3])
    os.utime(paths[3], ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))  # touched: same bytes, newer
    opened_images.clear()
    describe(model, paths, cached)
    assert opened_images == [str(paths[3])]
    opened_images.clear()
    describe(model, paths, cached)
    assert opened_images == []


def test_a_killed_fill_leaves_whole_entries_that_the_next_pass_uses(
    model, tmp_path, opened_images, monkeypatch
):
    paths = write_images(tmp_path)
    plain = eval_transform((24, 32), MEAN, STD)
    cache = ImageCache(tmp_path / "cache", plain.stage)
    cached = plain.cached_in(cache)
    renames, real_replace = [], os.replace

    def killed_at_the_third(src, dst):  # the process dies between writing an entry and renaming it
        renames.append(dst)
        if len(renames) == 3:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(image_cache.os, "replace", killed_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        describe(model, paths, cached)
    monkeypatch.setattr(image_cache.os, "replace", real_replace)
    assert len(list(cache.root.rglob(".*.tmp"))) == 1  # the half-done entry was never renamed into place
    from_files = describe(model, paths, plain)
    opened_images.clear()
    assert np.array_equal(describe(model, paths, cached), from_files)
    assert sorted(opened_images) == sorted(
        str(p) for p in paths[2:]
    )  # 2 whole entries read: the rest decoded
    truncated = cache.entry(paths[0])
    truncated.write_bytes(truncated.read_bytes()[:100])  # a damaged entry is decoded again, not read
    opened_images.clear()
    assert np.array_equal(describe(model, paths, cached), from_files)
    assert opened_images == [str(paths[0])]


def full_disk(monkeypatch, free: int = 0) -> None:
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=free))


def test_the_default_folder_without_room_warns_once_and_decodes_from_the_files(
    model, tmp_path, monkeypatch, caplog
):
    paths = write_images(tmp_path)
    plain = eval_transform((24, 32), MEAN, STD)
    cached = plain.cached_in(ImageCache(tmp_path / "cache", plain.stage, given=False))
    full_disk(monkeypatch)
    with caplog.at_level(logging.WARNING):
        first, second = describe(model, paths, cached), describe(model, paths, cached)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(tmp_path / "cache") in warnings[0] and "needed" in warnings[0]
    assert "\n" not in warnings[0]
    assert not (tmp_path / "cache").exists()  # nothing written
    from_files = describe(model, paths, plain)
    assert np.array_equal(first, from_files) and np.array_equal(second, from_files)


def test_a_given_folder_without_room_is_one_line_naming_it_and_the_size_needed(model, tmp_path, monkeypatch):
    paths = write_images(tmp_path)
    plain = eval_transform((24, 32), MEAN, STD)
    cached = plain.cached_in(ImageCache(tmp_path / "cache", plain.stage, given=True))
    full_disk(monkeypatch, free=1000)
    with pytest.raises(WriteError) as error:
        describe(model, paths, cached)
    message = str(error.value)
    assert "\n" not in message and f"--image-cache {tmp_path / 'cache'}" in message
    assert "24.0 KiB needed, 1000 B free" in message  # 6 images of 24x32x3 + header: a 4 KiB block each
    assert not (tmp_path / "cache").exists()


class FullDiskFile:
    """A file whose second write fails as on a full disk."""

    def __init__(self, path, mode):
        self.file, self.writes = open(path, mode), 0

    def write(self, data):
        self.writes += 1
        if self.writes == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.file.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


@pytest.mark.parametrize("given", [True, False], ids=["given folder", "default folder"])
def test_a_full_disk_while_writing_an_entry_leaves_no_temporary_file(model, tmp_path, monkeypatch, given):
    paths = write_images(tmp_path)
    plain = eval_transform((24, 32), MEAN, STD)
    cache = ImageCache(tmp_path / "cache", plain.stage, given=given)
    monkeypatch.setattr(image_cache, "open", FullDiskFile, raising=False)
    if given:
        with pytest.raises(WriteError, match=r"^--image-cache .*: cannot write .*: No space left on device;"):
            describe(model, paths, plain.cached_in(cache))
    else:  # one warning, and the descriptors all the same
        assert np.array_equal(describe(model, paths, plain.cached_in(cache)), describe(model, paths, plain))
    assert list(cache.root.rglob("*.tmp")) == [] and [p for p in cache.root.rglob("*") if p.is_file()] == []


def test_image_cache_setting_names_a_folder_the_default_or_none(tmp_path, monkeypatch):
    monkeypatch.delenv(image_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder("auto") == (tmp_path / "xdg" / "vpr-bench" / "images", False)
    monkeypatch.setenv(image_cache.ENV, str(tmp_path / "env"))
    assert cache_folder("auto") == (tmp_path / "env", False)
    monkeypatch.setenv(image_cache.ENV, "off")
    assert cache_folder("auto") == (None, False)
    assert cache_folder(str(tmp_path / "mine")) == (tmp_path / "mine", True)
    assert cache_folder("off") == (None, False)
    model = build_method(tiny_config(**{"model.method": "gem"}).model)
    assert data_transform(model, DataConfig(image_cache="off")).cache is None
    given = data_transform(model, DataConfig(image_size=(24, 32), image_cache=str(tmp_path / "mine"))).cache
    assert given == ImageCache(tmp_path / "mine", "resize-24x32-bilinear", given=True)
    native = data_transform(model, DataConfig(image_size=(0, 0), image_cache=str(tmp_path))).cache
    assert native.stage == "decoded"  # the decoded image, whatever the size, for any tensor-side resize
