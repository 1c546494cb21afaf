"""``MethodSpec``: what ``register_method`` (and ``register_pipeline``) takes besides a name, a
description and the builder, as one typed record. A field that is not here fails at registration,
naming it, so a typo in a plugin is never silently ignored.

    @register_method("name", "one line", options=MyOptions, descriptor_dim=True,
                     presets={"demo": {...}, "paper": {...}})
    def build(cfg: ModelConfig, options: MyOptions) -> nn.Module: ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vpr_bench.errors import RegistryError
from vpr_bench.options import NoOptions
from vpr_bench.published import Published


@dataclass(frozen=True)
class MethodSpec:
    options: type = NoOptions
    """The typed options dataclass ``--model-option KEY=VALUE`` fills (unknown keys fail by name)."""
    descriptor_dim: bool = False
    """Whether ``--descriptor-dim`` is honoured; when not, ``descriptor_dim_hint`` says what to use."""
    descriptor_dim_hint: str = "drop it"
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The method's own dotted values per preset (``{"demo": {"model.backbone": ...}}``), applied over
    the preset's."""
    trainer: type | None = None
    """A ``Trainer`` subclass that trains it (None: the triplet engine), e.g. distillation."""
    checkpoint_reader: Callable[[Any, Any], Any] | None = None
    """``reader(content, path) -> MethodCheckpoint | None``: reads its authors' files (None: not theirs)."""
    fetch_weights: Callable[[str | None], Any] | None = None
    """``fetch(file_name | None) -> Path``: the authors' published file (``--weights official[:FILE]``)."""
    published: Published | None = None
    """The facts of a published model, shown by ``vpr-bench list``."""


def make_spec(kind: str, name: str, spec_type: type, attributes: dict[str, Any]) -> Any:
    """``spec_type(**attributes)``, or a RegistryError naming the unknown field and the valid ones."""
    valid = [f.name for f in dataclasses.fields(spec_type)]
    unknown = [key for key in attributes if key not in valid]
    if unknown:
        raise RegistryError(
            f"{kind} {name!r}: unknown registration field {unknown[0]!r}; valid: {', '.join(valid)}"
        )
    return spec_type(**attributes)
