"""Every setting declared once: a dataclass field carrying its default, help, allowed values and bounds.

The CLI options (``vpr_bench.cli._options``), the validation of a resolved configuration, the reading of
``--config`` files and of ``--model-option KEY=VALUE`` all come from these fields, with one coercion
function. Adding a flag means adding one field::

    lr: float = setting(1e-5, "Learning rate [paper: 1e-5].", above=0, commands=TRAIN)

A method's options use the same helper (``vpr_bench.options.option`` is ``setting`` without a flag).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vpr_bench.errors import ConfigError

# The commands a setting's flag appears on.
EVALUATE = frozenset({"run", "eval", "ablate"})
TRAIN = frozenset({"run", "ablate"})
NONE: frozenset[str] = frozenset()

Choices = tuple | Callable[[], Iterable[str]] | None


@dataclass(frozen=True)
class Setting:
    """What a field declares besides its default (see ``setting``)."""

    help: str
    commands: frozenset = NONE
    flag: str | None = None  # the CLI flag; None → "--" + the field name with dashes
    choices: Choices = None  # a tuple, or a callable giving the names (a registry's, read when checked)
    minimum: float | None = None  # value ≥ minimum
    above: float | None = None  # value > above
    maximum: float | None = None  # value ≤ maximum
    cli_parser: Callable[[str], Any] | None = None  # the flag's text → value (sizes, lists)
    metavar: str | None = None
    negatable: bool = False  # a bool shown as --name/--no-name (else a plain on-switch)
    multiple: bool = False  # a repeatable flag (method options KEY=VALUE)
    check: Callable[[Any], str | None] | None = None  # extra check: an error text, or None
    # a method option whose value other than the default (the paper's) changes what the method computes,
    # not only its size: records name it (``variant``) and ``compare`` keeps such runs in their own rows
    variant: bool = False


def setting(default: Any, help: str, **declared: Any) -> Any:  # noqa: A002  (the natural name)
    """A dataclass field with its default and a ``Setting`` (help, commands, choices, bounds…)."""
    if isinstance(default, (dict, list)):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata={"setting": Setting(help, **declared)}
        )
    return dataclasses.field(default=default, metadata={"setting": Setting(help, **declared)})


def declared(field: dataclasses.Field) -> Setting:
    return field.metadata.get("setting") or Setting(field.metadata.get("help", ""))


def flag_of(field: dataclasses.Field) -> str:
    return declared(field).flag or "--" + field.name.replace("_", "-")


def choices_of(spec: Setting) -> tuple[str, ...] | None:
    if spec.choices is None:
        return None
    return tuple(spec.choices) if isinstance(spec.choices, tuple) else tuple(spec.choices())


def default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


# ---- one coercion system: CLI text, YAML/JSON values and method options all pass through ``coerce`` --
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def coerce(value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` names (strings read as numbers or booleans; lists as tuples);
    ValueError when it is not one. A bool is no number and a number no bool."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = typing.get_args(hint)
        if type(None) in kinds and (value is None or str(value).lower() in ("none", "null")):
            return None
        for kind in (k for k in kinds if k is not type(None)):
            try:
                return coerce(value, kind)
            except ValueError:
                continue
        raise ValueError(value)
    if value is None:
        raise ValueError(value)
    if origin is typing.Literal:
        if value in typing.get_args(hint):
            return value
        raise ValueError(value)
    if origin is tuple:
        return _coerce_tuple(value, hint)
    if (origin or hint) is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ValueError(value)
    return _coerce_scalar(value, hint)


def _coerce_scalar(value: Any, kind: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ValueError(value)
    if isinstance(value, bool):
        raise ValueError(value)
    if kind is int:
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(value)
    if kind is float:
        if isinstance(value, (int, float, str)):
            return float(value)  # ValueError for text that is no number
        raise ValueError(value)
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError(value)
    return value


def _coerce_tuple(value: Any, hint: Any) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ValueError(value)
    args = typing.get_args(hint)
    kinds = [args[0]] * len(value) if Ellipsis in args else list(args)
    if len(value) != len(kinds):
        raise ValueError(value)
    return tuple(coerce(v, k) for v, k in zip(value, kinds, strict=True))


def type_name(hint: Any) -> str:
    """``int``, ``int or none``, ``tuple[int, int]``: the type a message names."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(k) for k in typing.get_args(hint))
    if hint is type(None):
        return "none"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    return hint.__name__ if isinstance(hint, type) and origin is None else str(hint).replace("typing.", "")


# ---- checks generated from the declarations ---------------------------------------------------------


def violation(field: dataclasses.Field, value: Any, name: str | None = None) -> str | None:
    """What is wrong with ``value`` for this field by its declaration (bounds, choices, own check),
    naming the field as ``name`` (default: its flag)."""
    spec = declared(field)
    if value is None:
        return None
    name = name or flag_of(field)
    allowed = choices_of(spec)  # empty: a registry not filled yet (its lookup fails later, by name)
    if allowed and value not in allowed:
        return f"{name} {value!r} is not one of {', '.join(allowed)}"
    items = value if isinstance(value, tuple) else (value,)
    numbers = [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if spec.minimum is not None and any(v < spec.minimum for v in numbers):
        return f"{name} must be ≥ {spec.minimum:g}"
    if spec.above is not None and any(v <= spec.above for v in numbers):
        return f"{name} must be > {spec.above:g}"
    if spec.maximum is not None and any(v > spec.maximum for v in numbers):
        return f"{name} must be ≤ {spec.maximum:g}"
    return spec.check(value) if spec.check else None


def check(obj: Any) -> None:
    """Every declared field of the dataclass instance ``obj`` is valid, else a ConfigError naming it."""
    for field in dataclasses.fields(obj):
        problem = violation(field, getattr(obj, field.name))
        if problem:
            raise ConfigError(problem)


# ---- typed options (methods' ``--model-option`` and anything filled from names and values) ------------


def parse(cls: type, values: dict[str, Any], owner: str) -> Any:
    """``cls(**values)`` with names, types and declared bounds checked; errors name ``owner`` and the
    valid options."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    valid = ", ".join(sorted(fields)) or "none"
    parsed = {}
    for name, value in values.items():
        if name not in fields:
            raise ConfigError(f"--model-option {name!r} is not an option of {owner}; valid: {valid}")
        try:
            parsed[name] = coerce(value, hints[name])
        except (TypeError, ValueError):
            raise ConfigError(
                f"--model-option {name}={value!r}: {owner} expects {type_name(hints[name])}"
            ) from None
        problem = violation(fields[name], parsed[name], name=f"--model-option {name}")
        if problem:
            raise ConfigError(f"{owner}: {problem}")
    try:
        return cls(**parsed)
    except ValueError as exc:  # the dataclass's own checks (__post_init__)
        raise ConfigError(f"{owner}: {exc}") from None


def variant_of(options: Any) -> str:
    """``name=value`` of each ``variant`` option of the dataclass instance ``options`` that differs from
    its default (the paper's model), comma-separated; "" for the paper's model."""
    changed = [
        f"{f.name}={_text(getattr(options, f.name))}"
        for f in dataclasses.fields(options)
        if declared(f).variant and getattr(options, f.name) != default_of(f)
    ]
    return ",".join(changed)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(name, default, help) of each field, for listings."""
    return [(f.name, repr(default_of(f)), declared(f).help) for f in dataclasses.fields(cls)]
