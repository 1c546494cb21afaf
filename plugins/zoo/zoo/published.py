"""What a published model is: its paper, official files and preprocessing, and how its authors' files load.

``register_published`` registers a method (``vpr_bench.registry.register_method``) whose
- presets set the official evaluation preprocessing (input size, resize order, interpolation), so it is
  the default and lands in every record's protocol (``--image-size``/``--interpolation`` override it),
  and, for a batch-dependent model, the official images per forward pass (``--eval-batch-size``);
- ``checkpoint_reader`` reads the authors' files as downloaded — a flat state dict, a ``state_dict`` /
  ``model_state_dict`` wrapper, ``module.`` prefixes — recognises them by a key only they have, maps their
  keys to ours (``convert``) and lets the file decide the variant (backbone, descriptor size, clusters…);
- ``trained_parts`` (where given) makes it trainable by ``vpr-bench run`` from a backbone alone, with the
  parts its paper freezes frozen (``zoo.models._trunks``);
- ``fetch_weights`` serves ``--weights official[:FILE]``: the authors' file, downloaded once into the torch
  hub cache (checksum where published), or one line naming the URL and ``--checkpoint`` when offline.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch

from vpr_bench.api import (  # noqa: F401  (re-exported to the models)
    CheckpointError,
    ConfigError,
    MethodCheckpoint,
    OfficialFile,
    Published,
    PublishedFigure,
    register_method,
)

log = logging.getLogger(__name__)
PRESETS = ("demo", "paper")

# The benchmarks of the figures authors report: (their name, the protocol our readers give it as records
# name it, or None where none of our readers reproduces it). Each figure holds only under its protocol.
PITTS250K = ("Pitts250k test", "pitts250k-test-25m")
PITTS30K = ("Pitts30k test", "pitts30k-test-25m")
MSLS_VAL = ("MSLS val (740 queries, 18,871 database images)", "msls-val")
MSLS_CHALLENGE = ("MSLS challenge (the six test cities, scored by the challenge server)", "msls-test")
NORDLAND_1 = ("Nordland 1-frame (VPR-Bench lists, 2,760 queries, ±1 frame)", "nordland-vprbench")
NORDLAND_10 = ("Nordland 10-frame (±10 frames)", None)
TOKYO247 = ("Tokyo 24/7", "tokyo247-test-25m")


def reported(
    source: str, file: str | None, *rows: tuple, secondhand: bool = False, variant: str = ""
) -> tuple[PublishedFigure, ...]:
    """The figures one ``source`` states for one official ``file``: rows of (benchmark, protocol, R@1,
    R@5), R@5 None where the source gives none."""
    return tuple(
        PublishedFigure(benchmark, protocol, r1, r5, source, secondhand, file, variant)
        for benchmark, protocol, r1, r5 in rows
    )


def rows(benchmarks: tuple, recalls: tuple) -> tuple:
    """A source table's row, as ``reported`` takes it: each (name, protocol) with its (R@1, R@5)."""
    return tuple((*benchmark, *recall) for benchmark, recall in zip(benchmarks, recalls, strict=True))


# convert(state) -> (our state dict, the model options the file decides); KeyError when a key is missing
Converter = Callable[[dict], tuple[dict, dict]]


def unwrap(content, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside an official file: flat, or under ``state_dict`` / ``model_state_dict`` /
    ``model``; DataParallel's ``module.`` prefix removed."""
    state = content
    if isinstance(state, dict):
        for wrapper in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a dict of tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def read_official(
    content, path: Path, name: str, published: Published, convert: Converter, file_settings=None
):
    """A ``checkpoint_reader``: the authors' file mapped to ours, or None when ``path`` is not in their
    layout (then it is read as a vpr-bench state dict and a mismatch names the expected keys).
    ``file_settings(settings) -> settings`` lets a family decide per-file settings (BoQ's input size)."""
    state = unwrap(content, path)
    if published.mark and published.mark not in state:
        return None
    try:
        ours, options = convert(state)
    except KeyError as exc:
        sample = ", ".join(list(state)[:3])
        raise CheckpointError(
            f"{path} looks like a {name} checkpoint but lacks {exc.args[0]!r} (its first keys: {sample})"
        ) from None
    known = next((f.name for f in published.files if path.name in (f.name, cache_name(f))), None)
    description = f"official {known}" if known else f"checkpoint:{path} ({name}, official layout)"
    backbone = options.get("backbone", published.backbone)  # the record names what the file holds
    settings = {"model.backbone": backbone, "model.options": options, **published.settings()}
    if file_settings is not None:
        settings = file_settings(settings)
    return MethodCheckpoint(path, ours, settings, description)


def cache_name(file: OfficialFile) -> str:
    """The file's name in the torch hub cache: its own (where ``torch.hub.load_state_dict_from_url`` puts
    a release file), prefixed by owner and repository for a Hugging Face file (``model.safetensors`` is
    every repository's name there)."""
    url = urlparse(file.url)
    if url.hostname == "huggingface.co":
        owner, repository = url.path.strip("/").split("/")[:2]
        return f"{owner}_{repository}_{file.name}"
    return file.name


def fetch_official(choice: str | None, name: str, published: Published) -> Path:
    """``--weights official[:FILE]``: the authors' file in the torch hub cache, downloaded once."""
    files = {f.name: f for f in published.files}
    if not files:
        raise ConfigError(
            f"--weights official: no official file of {name} is known here; pass --checkpoint FILE"
        )
    chosen = files.get(choice) if choice else published.files[0]
    if chosen is None:
        raise ConfigError(f"--weights official:{choice}: {name} publishes {', '.join(files)}")
    target = Path(torch.hub.get_dir()) / "checkpoints" / cache_name(chosen)
    if target.is_file():
        return target
    host = urlparse(chosen.url).hostname or ""
    if host.endswith(("drive.google.com", "docs.google.com")):
        raise ConfigError(
            f"--weights official: {chosen.name} is published on Google Drive ({chosen.url}), which needs a "
            f"browser; download it and pass --checkpoint FILE"
        )
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError:
        raise ConfigError(
            f"--weights official: {chosen.url} cannot be reached (offline?); download {chosen.name} "
            "elsewhere and pass --checkpoint FILE"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s into %s", chosen.url, target)
    torch.hub.download_url_to_file(chosen.url, str(target), hash_prefix=chosen.sha256, progress=True)
    return target


def preset_settings(published: Published) -> dict:
    """The official preprocessing and, for a batch-dependent model, the official images per forward pass
    (``eval.batch_size``): preset values, which a replayed run's own batch size and the flag override."""
    batch = {"eval.batch_size": published.batch_size} if published.batch_size else {}
    return {**published.settings(), **batch}


def register_published(
    name: str,
    description: str,
    published: Published,
    options: type,
    convert: Converter,
    file_settings=None,
    presets: dict[str, dict] | None = None,
    **spec,
):
    """``register_method`` for a published model (see the module docstring); ``file_settings`` is the
    family's hook deciding settings per file (see ``read_official``); ``presets``: the family's own values
    per preset, over the official preprocessing (what a file decides still wins). Evaluation only
    (``trainable=False``) unless the family declares how its paper trains it (``trained_parts``)."""
    spec.setdefault("trainable", "trained_parts" in spec)
    return register_method(
        name,
        description,
        options=options,
        descriptor_dim=False,
        descriptor_dim_hint="the official file decides its size (see vpr-bench list --method " + name + ")",
        presets={
            preset: {**preset_settings(published), **(presets or {}).get(preset, {})} for preset in PRESETS
        },
        checkpoint_reader=functools.partial(
            read_official, name=name, published=published, convert=convert, file_settings=file_settings
        ),
        fetch_weights=functools.partial(fetch_official, name=name, published=published),
        published=published,
        **spec,
    )
