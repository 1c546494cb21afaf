"""How the configuration's values are read from the command line and checked: image sizes, lists of
integers and names, devices, metric names (used by the declarations in ``sections.py``)."""

from __future__ import annotations

from vpr_bench.errors import ConfigError
from vpr_bench.registry import METRICS, registry_names

NATIVE = (0, 0)  # an image size that keeps each image's own size (CosPlace / EigenPlaces)
MAX_IMAGE_SIDE = 4096  # larger inputs exhaust memory before the first batch; no VPR protocol uses them


def parse_image_size(text: str) -> tuple[int, int]:
    """``HxW`` or ``native``, as given on the command line."""
    if text.strip().lower() == "native":
        return NATIVE
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--image-size {text!r}: expected HxW (e.g. 224x224) or native") from None
    if not all(8 <= side <= MAX_IMAGE_SIDE for side in (height, width)):  # 0x0 too: native is a word
        raise ConfigError(
            f"--image-size {text}: each side must be between 8 and {MAX_IMAGE_SIDE} pixels (or native, each "
            "image's own size)"
        )
    return height, width


def image_size_problem(size: tuple[int, int]) -> str | None:
    if tuple(size) == NATIVE:
        return None
    if not all(8 <= side <= MAX_IMAGE_SIDE for side in size):
        return f"each side must be between 8 and {MAX_IMAGE_SIDE} pixels (or native, each image's own size)"
    return None


def check_image_size(size: tuple[int, int]) -> str | None:
    problem = image_size_problem(size)
    return f"--image-size {size[0]}x{size[1]}: {problem}" if problem else None


def parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{text!r}: expected comma-separated integers, e.g. 1,5,10,20") from None


def check_recall_at(values: tuple[int, ...]) -> str | None:
    return None if values else "--recall-at needs values ≥ 1"


def parse_names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def check_metrics(names: tuple[str, ...]) -> str | None:
    """Registered metric names or ``all``; unchecked while the registry is empty (filled by load_all)."""
    if not names:
        return "--metrics needs metric names or all"
    known = registry_names(METRICS)
    unknown = [n for n in names if n != "all" and n not in known]
    if known and unknown:
        return f"--metrics: unknown metric {unknown[0]!r}; valid: {', '.join(known)}, or all"
    return None


def check_device(device: str) -> str | None:
    if device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()):
        return None
    return "--device must be auto, cpu, cuda or cuda:N"
