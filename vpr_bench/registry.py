"""One small generic registry, used for datasets, methods, metrics and losses.

Modelled on timm's ``@register_model`` / ``create_model``: a decorator registers a builder under a name
with a one-line description; ``build(name, ...)`` calls it. Each entry remembers where it came from
("built-in" or "plugin:<name>") so ``vpr-bench list`` can say so and name clashes name both sides.

The registries are pure containers: they import nothing of the package and load nothing by
themselves. They are filled at one entry point — ``vpr_bench.load_all()`` (the CLI calls it; so does a
library user) — which imports the built-ins and then the plugins, once.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from vpr_bench.errors import RegistryError
from vpr_bench.spec import MethodSpec, make_spec

BUILTIN = "built-in"
_current_source: contextvars.ContextVar[str] = contextvars.ContextVar("vpr_bench_source", default=BUILTIN)


@contextlib.contextmanager
def registration_source(source: str) -> Iterator[None]:
    """Everything registered inside this block is attributed to ``source``."""
    token = _current_source.set(source)
    try:
        yield
    finally:
        _current_source.reset(token)


@dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable[..., Any]
    description: str
    source: str
    spec: Any = None  # a method's ``MethodSpec``; None for the registries that take no fields


class Registry:
    """Name → builder. A name ending in ``:`` is a family taking an argument (``folder:<path>``)."""

    def __init__(self, kind: str, plural: str | None = None, spec: type | None = None):
        self.kind = kind
        self.plural = plural or kind + "s"
        self.spec_type = spec  # the typed fields its entries take (``MethodSpec``), or None for none
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, description: str, **fields: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator registering a builder under ``name``; ``fields`` fill the registry's spec type
        (an unknown field fails here, naming it)."""
        if not name or name != name.strip():
            raise RegistryError(f"invalid {self.kind} name {name!r}")
        if not description or "\n" in description:
            raise RegistryError(f"{self.kind} {name!r} needs a one-line description")
        if self.spec_type is not None:
            spec = make_spec(self.kind, name, self.spec_type, fields)
        elif fields:
            raise RegistryError(
                f"{self.kind} {name!r}: a {self.kind} takes no fields, got {', '.join(fields)}"
            )
        else:
            spec = None

        def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
            source = _current_source.get()
            if source == BUILTIN:  # imported directly, not through the plugin loader: say whose it is
                source = _source_of_module(getattr(builder, "__module__", "") or "")
            previous = self._entries.get(name)
            if previous is not None:
                raise RegistryError(
                    f"{self.kind} {name!r} is registered twice: by {previous.source} "
                    f"({_where(previous.builder)}) and by {source} ({_where(builder)})"
                )
            self._entries[name] = Entry(name, builder, description, source, spec)
            return builder

        return decorator

    def resolve(self, spec: str) -> tuple[Entry, str | None]:
        """The entry for ``spec`` and, for a family (``name:arg``), its argument."""
        if spec in self._entries and not spec.endswith(":"):
            return self._entries[spec], None
        prefix, sep, argument = spec.partition(":")
        if sep and prefix + ":" in self._entries:
            if not argument:
                raise RegistryError(
                    f"{self.kind} {spec!r} needs an argument after ':' (e.g. {prefix}:<path>)"
                )
            return self._entries[prefix + ":"], argument
        raise RegistryError(f"unknown {self.kind} {spec!r}; valid: {', '.join(self.display_names())}")

    def get(self, name: str) -> Entry:
        return self.resolve(name)[0]

    def build(self, spec: str, *args: Any, **kwargs: Any) -> Any:
        entry, argument = self.resolve(spec)
        if argument is not None:
            return entry.builder(argument, *args, **kwargs)
        return entry.builder(*args, **kwargs)

    def entries(self) -> list[Entry]:
        return sorted(self._entries.values(), key=lambda e: e.name)

    def display_names(self) -> list[str]:
        return [e.name + "<path>" if e.name.endswith(":") else e.name for e in self.entries()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def remove_source(self, source: str) -> None:
        """Forget everything one plugin registered (used when that plugin fails half-way)."""
        for name in [n for n, e in self._entries.items() if e.source == source]:
            del self._entries[name]


def _source_of_module(module: str) -> str:
    """``built-in`` for vpr_bench's own modules; else the plugin whose entry point lives in the same
    top-level package (``plugin:<name>``); else ``module:<package>``."""
    package = module.split(".")[0]
    if package in ("vpr_bench", "tests", "__main__", ""):
        return BUILTIN
    from importlib import metadata

    for entry_point in metadata.entry_points(group="vpr_bench.plugins"):
        if entry_point.module.split(".")[0] == package:
            return f"plugin:{entry_point.name}"
    return f"module:{package}"


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def registry_names(registry: Registry) -> tuple[str, ...]:
    """The names registered, e.g. as a setting's allowed values (``choices=lambda: registry_names(R)``)."""
    return tuple(sorted(registry._entries))


DATASETS = Registry("dataset")
METHODS = Registry("method", spec=MethodSpec)
METRICS = Registry("metric")
LOSSES = Registry("loss", "losses")
KD_LOSSES = Registry("kd-loss", "kd-losses")  # distillation losses (student, teacher, triplets)
DISTANCES = Registry("distance")  # of the metric losses, as pytorch-metric-learning distances
REDUCTIONS = Registry("reduction")  # of a batch's losses, as pytorch-metric-learning reducers
# multi-model methods: ``run``/``ablate``/``evaluate`` over a RunConfig
PIPELINES = Registry("pipeline", spec=MethodSpec)
ALL_REGISTRIES = (DATASETS, METHODS, METRICS, LOSSES, KD_LOSSES, DISTANCES, REDUCTIONS, PIPELINES)

register_dataset = DATASETS.register
register_method = METHODS.register
register_metric = METRICS.register
register_loss = LOSSES.register
register_kd_loss = KD_LOSSES.register
register_distance = DISTANCES.register
register_reduction = REDUCTIONS.register
register_pipeline = PIPELINES.register
