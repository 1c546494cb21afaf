"""Readers whose ground truth is explicit lists of correct database images (no coordinates).

- VPR-Bench (Zaffar et al., IJCV 2021): ``<root>/{query,ref}/*.jpg`` + ``ground_truth_new.npy``, an object
  array of rows ``[query_index, [correct reference indices]]``. The real Corridor dataset ships with
  vpr-bench in this layout (``corridor``).
- GSV-Cities / MixVPR / SALAD evaluation lists: ``<name>_dbImages.npy``, ``<name>_qImages.npy`` (image
  paths relative to the folder holding them) and ``<name>_gt.npy`` (per query, the correct database
  indices).
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path

import numpy as np

from vpr_bench.config import DataConfig
from vpr_bench.datasets.base import VPRDataset, default_data_dir
from vpr_bench.datasets.folder import list_images
from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.datasets.split import Split
from vpr_bench.errors import DatasetError
from vpr_bench.registry import register_dataset

PACKAGED = Path(__file__).resolve().parent.parent / "data"


class _Pickled:
    """Stands in for numpy's ``_reconstruct`` / ``dtype`` while unpickling: it only records what the
    pickle asks for. numpy's own ``__setstate__`` trusts its input (a list shorter than the shape it
    announces makes it read past the list and crash), so arrays are rebuilt in ``_array`` after checks."""

    def __init__(self, *args):
        self.args, self.state = args, None

    def __setstate__(self, state) -> None:
        self.state = state


class _PickledArray(_Pickled):
    pass


class _PickledDtype(_Pickled):
    pass


def _dtype(spec) -> np.dtype:
    """Object, bool, integer and float dtypes only: what lists of indices are made of."""
    if not isinstance(spec, _PickledDtype) or not isinstance(spec.args[0], str):
        raise ValueError("an array without a dtype")
    code = spec.args[0]
    if code[:1] == "O":
        return np.dtype(object)
    if code[:1] not in ("b", "i", "u", "f") or not code[1:].isdigit():
        raise ValueError(f"dtype {code!r} in an index list")
    order = spec.state[1] if isinstance(spec.state, tuple) and len(spec.state) > 1 else "="
    return np.dtype(code).newbyteorder(order if order in ("<", ">") else "=")


def _shape(shape) -> tuple[int, ...]:
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise ValueError(f"array shape {shape!r}")
    return shape


def _numbers(data, dtype: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    """A numeric array from its raw bytes (a Python 2 pickle gives them as a latin1 ``str``)."""
    if not isinstance(data, (str, bytes, bytearray)):  # bytes(n) would allocate n bytes
        raise ValueError(f"{type(data).__name__} data for a {shape} {dtype} array")
    raw = data.encode("latin1") if isinstance(data, str) else bytes(data)
    if dtype.hasobject or len(raw) != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"{len(raw)} data bytes for a {shape} {dtype} array")
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order=order).copy()


def _array(pickled: _PickledArray) -> np.ndarray:
    """The array ``ndarray.__setstate__`` would build, with its shape, dtype and data checked first."""
    state = pickled.state
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise ValueError("an array without a valid state")
    shape, dtype, fortran, data = state[-4:]
    shape, dtype, order = _shape(shape), _dtype(dtype), "F" if fortran else "C"
    if not dtype.hasobject:
        return _numbers(data, dtype, shape, order)
    if not isinstance(data, list) or len(data) != math.prod(shape):
        items = len(data) if isinstance(data, list) else type(data).__name__
        raise ValueError(f"{shape} object array pickled with {items} items")
    array = np.empty(len(data), dtype=object)
    for i, item in enumerate(data):  # element-wise: numpy would turn nested lists into dimensions
        array[i] = _rebuilt(item)
    return array.reshape(shape, order=order)


def _from_buffer(data, dtype, shape, order) -> np.ndarray:
    """numpy's ``_frombuffer``: how pickle protocol 5 spells a numeric array."""
    return _numbers(data, _dtype(dtype), _shape(shape), "F" if order == "F" else "C")


def _scalar(dtype, data):
    """numpy's ``scalar(dtype, data)``: a number from its bytes, or (object dtype) the object itself."""
    dtype = _dtype(dtype)
    return _rebuilt(data) if dtype.hasobject else _numbers(data, dtype, (), "C")[()]


def _rebuilt(item):
    if isinstance(item, _PickledArray):
        return _array(item)
    if isinstance(item, list):
        return [_rebuilt(x) for x in item]
    if isinstance(item, tuple):
        return tuple(_rebuilt(x) for x in item)
    return item


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Protocol-2 pickles written by Python 3 spell ``bytes`` as ``_codecs.encode(text, "latin1")``
    (and ``b""`` as ``bytes()``)."""
    if encoding != "latin1":
        raise ValueError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# The only names an array of index lists pickles (numpy 1.x says numpy.core, 2.x numpy._core), each
# mapped to a checked stand-in; anything else (os.system, builtins.exec, ...) is refused before it is called.
_ARRAY_GLOBALS = {
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _PickledArray for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): _scalar for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _from_buffer for core in ("core", "_core")},
    **{(builtins, "bytes"): lambda: b"" for builtins in ("builtins", "__builtin__")},
    ("numpy", "ndarray"): np.ndarray,  # only passed to _reconstruct, never called
    ("numpy", "dtype"): _PickledDtype,
    ("_codecs", "encode"): _latin1_bytes,
}
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Reads numpy object arrays of numbers and lists and nothing else: a downloaded ground-truth
    file must not run code (``np.load(allow_pickle=True)`` would call whatever its pickle names)."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")  # latin1: Python 2 pickles (VPR-Bench's) hold byte strings
        self.path = path

    def find_class(self, module: str, name: str):
        try:
            return _ARRAY_GLOBALS[module, name]
        except KeyError:
            raise DatasetError(
                f"{self.path}: refused to unpickle {module}.{name}; a ground-truth .npy may only hold "
                "arrays, numbers and lists: download the file again from its source"
            ) from None


def _load_npy(path: Path, what: str) -> np.ndarray:
    """A .npy file; object arrays (lists of indices) through ``_ArrayUnpickler``, never plain pickle."""
    if not path.is_file():
        raise DatasetError(f"{path} not found: expected {what}")
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in _HEADER_READERS:
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
            shape, _, dtype = _HEADER_READERS[version](f)
            if not dtype.hasobject:
                f.seek(0)
                return np.load(f, allow_pickle=False)
            payload = io.BytesIO(f.read())  # in memory: a corrupt length cannot ask for more than it
            pickled = _ArrayUnpickler(payload, path).load()  # np.save pickles an object array whole
        if not isinstance(pickled, _PickledArray):
            raise ValueError(f"its pickle holds a {type(pickled).__name__}, not an array")
        array = _array(pickled)
    except (pickle.UnpicklingError, OSError, EOFError, ValueError, TypeError, LookupError) as exc:
        raise DatasetError(f"{path} is not a readable .npy file ({exc})") from None
    # corrupt pickles: BUILD on a number, a list holding itself, a huge length or memo index
    except (AttributeError, RecursionError, MemoryError, OverflowError) as exc:
        raise DatasetError(f"{path} is not a readable .npy file ({type(exc).__name__}: {exc})") from None
    if array.shape != shape:
        raise DatasetError(f"{path}: its pickle holds a {array.shape} array, its header says {shape}")
    return array


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
def vprbench(path: str, options: DataConfig) -> VPRBenchDataset:
    return VPRBenchDataset(f"vprbench-{Path(path).resolve().name}", Path(path))


@register_dataset(
    "npylist:", "GSV-Cities/MixVPR lists: npylist:<folder>:<name> → <name>_{dbImages,qImages,gt}.npy"
)
def npylist(spec: str, options: DataConfig) -> NpyListDataset:
    folder, sep, name = spec.rpartition(":")
    if not sep or not folder or not name:
        raise DatasetError(
            f"npylist:{spec}: expected npylist:<folder>:<name>, e.g. npylist:/data/msls:msls_val"
        )
    return NpyListDataset(Path(folder), name)


@register_dataset(
    "corridor", "real indoor corridor, 111 queries / 111 refs (Milford 2013), ships with vpr-bench"
)
def corridor(options: DataConfig) -> VPRBenchDataset:
    """``datasets/corridor`` (or ``--data-root``) if present, else the copy inside the package."""
    root = Path(options.data_root) if options.data_root else default_data_dir() / "corridor"
    return VPRBenchDataset("corridor", root if root.is_dir() else PACKAGED / "corridor")
