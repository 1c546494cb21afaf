"""``--config FILE``: a run's config.json (replayed) or a hand-written YAML/JSON file with its keys, read
as dotted settings, each checked against its field's declared type."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from vpr_bench.config.sections import SECTIONS, RunConfig
from vpr_bench.errors import ConfigError
from vpr_bench.settings import coerce, type_name

# Top-level keys a run's config.json holds beside the settings (runner.train_run, results.store).
RECORD_KEYS = ("argv", "resume_argv", "environment", "record_extra")
# Keys that only a result record (metrics.json) has: such a file is no configuration.
_RECORD_ONLY_KEYS = ("schema_version", "metrics", "protocol")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A ``--config`` file as dotted settings for ``resolve``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not a text file" if isinstance(exc, UnicodeDecodeError) else exc.strerror or str(exc)
        raise ConfigError(f"--config {path}: cannot read it ({reason})") from None
    import json

    import yaml

    json_file = path.suffix.lower() == ".json"
    try:
        values = json.loads(text) if json_file else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        message = " ".join(str(exc).split())  # YAML's errors span lines; the CLI prints one
        raise ConfigError(
            f"--config {path}: not valid {'JSON' if json_file else 'YAML'}: {message}"
        ) from None
    if isinstance(values, dict) and any(k in values for k in _RECORD_ONLY_KEYS):
        raise ConfigError(
            f"--config {path}: this is a result record, not a configuration; pass the run's config.json "
            f"(in the same folder) to replay the run"
        )
    return file_settings(values, f"--config {path}")


def file_settings(values: Any, source: str) -> dict[str, Any]:
    """``RunConfig.to_dict``-shaped ``values`` as dotted settings, each coerced to its field's type.
    Unknown keys fail, naming ``source``, the key and the valid keys of its section; the keys a run's
    config.json adds (``RECORD_KEYS``) are skipped."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of sections ({', '.join(SECTIONS)}) and settings")
    top = typing.get_type_hints(RunConfig)
    settings: dict[str, Any] = {}
    for key, value in values.items():
        if key in RECORD_KEYS:
            continue
        if key not in top:
            valid = ", ".join(k for k in top if k not in SECTIONS)
            raise ConfigError(
                f"{source}: unknown key {key!r}; valid: the sections {', '.join(SECTIONS)}, and {valid}"
            )
        if key not in SECTIONS:
            settings[key] = _typed(source, key, top[key], value)
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping of settings, not {value!r}")
        hints = typing.get_type_hints(SECTIONS[key])
        for name, item in value.items():
            if name not in hints:
                raise ConfigError(
                    f"{source}: unknown key {name!r} in section {key}; valid keys of {key}: "
                    f"{', '.join(hints)}"
                )
            settings[f"{key}.{name}"] = _typed(source, f"{key}.{name}", hints[name], item)
    return settings


def _typed(source: str, key: str, hint: Any, value: Any) -> Any:
    if value is None and type(None) not in typing.get_args(hint):
        raise ConfigError(f"{source}: {key} must not be null")
    try:
        return coerce(value, hint)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key} = {value!r} is not {type_name(hint)}") from None
