"""Plugin discovery through the ``vpr_bench.plugins`` entry-point group (pytest/pluggy style).

A plugin is an ordinary installed package declaring, in its setup.cfg::

    [options.entry_points]
    vpr_bench.plugins =
        myplugin = my_package.vpr_plugin

Loading the entry point imports that module (or, if it names a function, calls it); whatever it
registers is attributed to ``plugin:myplugin``. The core never imports a plugin by name. A plugin that
fails is reported with its name and error and leaves nothing half-registered; the others still load.
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass
from importlib import metadata

from vpr_bench.registry import ALL_REGISTRIES, registration_source

GROUP = "vpr_bench.plugins"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginStatus:
    name: str
    target: str  # "module:attr" from the entry point
    distribution: str  # "package version", or "?" when unknown
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


_statuses: list[PluginStatus] | None = None


def load_plugins(reload: bool = False) -> list[PluginStatus]:
    """Load every plugin once; return what happened to each. The built-ins must be registered first
    (``vpr_bench.load_all`` does both, in that order), so a plugin can never take a built-in's name."""
    global _statuses
    if _statuses is not None and not reload:
        return _statuses
    _statuses = [_load_one(ep) for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name)]
    return _statuses


def plugin_statuses() -> list[PluginStatus]:
    return list(_statuses or [])


def _load_one(entry_point: metadata.EntryPoint) -> PluginStatus:
    dist = entry_point.dist
    dist_label = f"{dist.metadata['Name']} {dist.version}" if dist is not None else "?"
    source = f"plugin:{entry_point.name}"
    try:
        with registration_source(source):
            target = entry_point.load()
            if callable(target) and not isinstance(target, types.ModuleType):
                target()
    except Exception as exc:  # a broken plugin must not take the harness down
        for registry in ALL_REGISTRIES:
            registry.remove_source(source)
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        log.warning("plugin %r (%s) failed to load: %s", entry_point.name, entry_point.value, message)
        return PluginStatus(entry_point.name, entry_point.value, dist_label, message)
    return PluginStatus(entry_point.name, entry_point.value, dist_label)
