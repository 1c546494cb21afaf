"""The CLI's configuration options, generated from the settings' declarations (``vpr_bench.config``
fields, see ``vpr_bench.settings``), how they become a ``RunConfig``, and logging set-up."""

from __future__ import annotations

import dataclasses
import logging
import sys
import types
import typing
from typing import Any

import click

from vpr_bench.config import SECTIONS, RunConfig, resolve
from vpr_bench.errors import VPRBenchError
from vpr_bench.settings import Setting, declared, flag_of

log = logging.getLogger("vpr_bench")


def parse_size(value: str | None, form: str = "HxW", example: str = "224x224") -> tuple[int, int] | None:
    """Two integers written ``AxB``, in the order given (``form`` names them for the error)."""
    if value is None:
        return None
    try:
        first, second = (int(v) for v in value.lower().split("x"))
        return first, second
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected {form}, e.g. {example}") from None


def parse_key_values(values: tuple[str, ...]) -> dict:
    """``KEY=VALUE`` pairs; values read as JSON when they parse (numbers, true/false), else strings."""
    import json

    parsed = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE, e.g. clusters=32")
        try:
            parsed[key] = json.loads(raw)
        except ValueError:
            parsed[key] = raw
    return parsed


def _declared_fields() -> list[tuple[str, dataclasses.Field, Any]]:
    """(dotted key, field, type hint) of every setting, section by section, then the top-level ones."""
    rows = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        rows += [(f"{section}.{f.name}", f, hints[f.name]) for f in dataclasses.fields(cls)]
    hints = typing.get_type_hints(RunConfig)
    rows += [(f.name, f, hints[f.name]) for f in dataclasses.fields(RunConfig) if f.name not in SECTIONS]
    first = ("model.method", "data.dataset")  # what every command needs, first in --help
    return sorted(rows, key=lambda row: first.index(row[0]) if row[0] in first else len(first))


def param_name(key: str) -> str:
    """The click parameter name of a dotted setting (``train.lr`` → ``train__lr``)."""
    return key.replace(".", "__")


def _scalar(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint if hint in (int, float, str, bool) else str


def _click_option(key: str, field: dataclasses.Field, hint: Any) -> Any:
    """One generated option: None when not given, so presets and files keep their values."""
    spec: Setting = declared(field)
    flag = flag_of(field)
    kwargs: dict[str, Any] = {"help": spec.help, "default": None, "metavar": spec.metavar}
    kind = _scalar(hint)
    if spec.multiple:
        kwargs.update(multiple=True, default=(), callback=lambda c, p, v: parse_key_values(v) or None)
    elif kind is bool:
        kwargs.pop("metavar")
        if spec.negatable:
            flag = f"{flag}/--no-{flag[2:]}"
        else:
            kwargs["is_flag"] = True
    elif spec.cli_parser is not None:
        parser = spec.cli_parser
        kwargs["callback"] = lambda c, p, v: None if v is None else parser(v)
    elif isinstance(spec.choices, tuple):
        kwargs["type"] = click.Choice(spec.choices)
    else:
        kwargs["type"] = kind
    return click.option(flag, param_name(key), **kwargs)


def config_options(command: str):
    """A decorator adding the options of every setting whose declaration lists ``command``."""
    chosen = [row for row in _declared_fields() if command in declared(row[1]).commands]

    def decorate(func):
        for key, field, hint in reversed(chosen):
            func = _click_option(key, field, hint)(func)
        return func

    return decorate


def given_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The dotted settings among a command's parameters (None and empty: not given)."""
    keys = {param_name(key): key for key, _, _ in _declared_fields()}
    return {keys[name]: value for name, value in options.items() if name in keys and value not in (None, ())}


def build_config(options: dict[str, Any], from_file: dict | None = None, config_file: dict | None = None):
    """The run's configuration: preset < a ``--config`` file (``config_file``: its dotted settings) <
    what a checkpoint file decides (``from_file``) < the flags given in ``options``."""
    values = given_settings(options)
    for key in ("model.method", "data.dataset"):
        if not values.get(key) and not (config_file or {}).get(key):
            raise click.UsageError(f"missing option --{key.split('.')[1]}")
    preset = values.pop("preset", None) or (config_file or {}).get("preset") or RunConfig().preset
    cfg = resolve(preset, values, from_file, config_file)
    if cfg.train.tensorboard or cfg.train.log_dir:  # fail at start-up, not after the first epoch
        from vpr_bench.training.curves import require_tensorboard

        require_tensorboard()
    _check_names(cfg)
    return cfg


def _check_names(cfg: RunConfig) -> None:
    """Unknown method and dataset names fail now, listing the valid ones, before any work."""
    from vpr_bench.methods import check_model_config
    from vpr_bench.registry import DATASETS, METHODS, PIPELINES

    if cfg.model.method not in PIPELINES:
        try:
            METHODS.get(cfg.model.method)
        except VPRBenchError:
            valid = ", ".join(sorted(METHODS.display_names() + PIPELINES.display_names()))
            raise VPRBenchError(f"unknown method {cfg.model.method!r}; valid: {valid}") from None
    check_model_config(cfg.model, PIPELINES if cfg.model.method in PIPELINES else METHODS)
    DATASETS.resolve(cfg.data.dataset)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (it may be swapped after set-up)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(quiet: bool) -> None:
    handler = next((h for h in log.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    log.setLevel(logging.INFO)
    log.propagate = False


def pipeline_of(method: str):
    from vpr_bench.registry import PIPELINES

    return PIPELINES.get(method).builder if method in PIPELINES else None
