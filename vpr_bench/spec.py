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
class TrainedParts:
    """Which parts of a method's network train and which stay frozen, in words, as its paper trains it. A
    run's record lists the parameters as built (``training.parts``, ``vpr_bench.methods.parts``)."""

    trains: str  # "layer3 of the trunk, the mixers and both projections"
    frozen: str = "nothing"  # "conv1, bn1, layer1, layer2 (when the trunk starts from pretrained weights)"
    source: str = ""  # where its code says so: "amaralibey/MixVPR 4043915 main.py (layers_to_freeze=2)"


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
    trainable: bool = True
    """Whether ``vpr-bench run`` trains it; False: evaluation only (its authors' files): ``run`` refuses."""
    trained_parts: TrainedParts = TrainedParts("every parameter")
    """Which parts train and which stay frozen, as its paper trains it (``vpr-bench list --method NAME``)."""

    def training_lines(self) -> list[str]:
        """Whether and how it trains, as ``vpr-bench list --method NAME`` shows it."""
        if not self.trainable:
            return ["trainable: no (evaluation of its authors' files only; vpr-bench run refuses it)"]
        parts = self.trained_parts
        source = [f"  as in: {parts.source}"] if parts.source else []
        trains, frozen = f"  trains: {parts.trains}", f"  frozen: {parts.frozen}"
        return ["trainable: yes (vpr-bench run)", trains, frozen, *source]


def make_spec(kind: str, name: str, spec_type: type, attributes: dict[str, Any]) -> Any:
    """``spec_type(**attributes)``, or a RegistryError naming the unknown field and the valid ones."""
    valid = [f.name for f in dataclasses.fields(spec_type)]
    unknown = [key for key in attributes if key not in valid]
    if unknown:
        raise RegistryError(
            f"{kind} {name!r}: unknown registration field {unknown[0]!r}; valid: {', '.join(valid)}"
        )
    return spec_type(**attributes)
