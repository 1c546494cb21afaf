"""Typed method options: a frozen dataclass per method, filled from ``--model-option KEY=VALUE``.

timm's way: a builder takes typed keyword arguments and an unknown one fails. Each method declares its
options as a dataclass whose fields are ``option(default, "help")`` (``vpr_bench.settings.setting``
without a CLI flag: bounds and choices may be declared too); ``parse`` checks names, types and bounds and
fails in one line naming the valid options; ``describe`` lists them for ``vpr-bench list --method NAME``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vpr_bench.settings import describe, parse, setting

__all__ = ["NoOptions", "describe", "option", "parse"]


def option(default: Any, help: str, **declared: Any) -> Any:  # noqa: A002  (the natural name)
    """A method option: its default, one-line help, and optionally ``choices``/``minimum``/…"""
    return setting(default, help, **declared)


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A method without options of its own."""
