"""Typed method options: a frozen dataclass per method, filled from ``--model-option KEY=VALUE``.

timm's way: a builder takes typed keyword arguments and an unknown one fails. Here each method declares
its options as a dataclass whose fields carry a one-line help (``option(default, "help")``); ``parse``
checks names and types and fails in one line naming the valid options; ``describe`` lists them for
``vpr-bench list --method NAME``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from vpr_bench.errors import ConfigError


def option(default: Any, help: str) -> Any:  # noqa: A002  (the natural name)
    """A dataclass field with a default and a one-line help."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A method without options of its own."""


def _allowed(annotation: Any) -> tuple[type, ...]:
    """The runtime types a field accepts (``int | None`` → (int, NoneType))."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(annotation) for t in _allowed(arg))
    if origin is typing.Literal:
        return tuple({type(v) for v in typing.get_args(annotation)})
    return (annotation,)


def _coerce(value: Any, allowed: tuple[type, ...]) -> Any:
    if type(None) in allowed and (value is None or str(value).lower() in ("none", "null")):
        return None
    if bool in allowed:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false", "1", "0", "yes", "no"):
            return str(value).lower() in ("true", "1", "yes")
        raise ValueError
    if int in allowed and not isinstance(value, bool):
        if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
            return int(value)
        if isinstance(value, float) and value.is_integer() and float not in allowed:
            return int(value)
    if float in allowed and not isinstance(value, bool):
        return float(value)
    if str in allowed and isinstance(value, str):
        return value
    raise ValueError


def parse(cls: type, values: dict[str, Any], method: str) -> Any:
    """``cls(**values)`` with names and types checked; errors name the method and the valid options."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    valid = ", ".join(sorted(fields)) or "none"
    parsed = {}
    for name, value in values.items():
        if name not in fields:
            raise ConfigError(f"--model-option {name!r} is not an option of {method}; valid: {valid}")
        allowed = _allowed(hints[name])
        try:
            parsed[name] = _coerce(value, allowed)
        except (TypeError, ValueError):
            kinds = " or ".join("none" if t is type(None) else t.__name__ for t in allowed)
            raise ConfigError(f"--model-option {name}={value!r}: {method} expects {kinds}") from None
    try:
        return cls(**parsed)
    except ValueError as exc:  # the dataclass's own checks (__post_init__)
        raise ConfigError(f"{method}: {exc}") from None


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(name, default, help) of each option, for listings."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((f.name, repr(default), f.metadata.get("help", "")))
    return rows
