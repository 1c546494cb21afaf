"""How a run's configuration is put together: preset < the recipe's values for it < the method's preset
values < a ``--config`` file < what a checkpoint file decides < the flags; then every field is checked
against its declaration."""

from __future__ import annotations

import copy
from typing import Any

from vpr_bench.config.presets import PRESETS
from vpr_bench.config.recipe import recipe_values
from vpr_bench.config.sections import RunConfig
from vpr_bench.errors import ConfigError


def apply(cfg: RunConfig, values: dict[str, Any], skip_none: bool = True) -> RunConfig:
    """Set dotted ``section.field`` values (None means "not given": keep what is there, unless
    ``skip_none`` is False: a config file's ``null`` is a value)."""
    for key, value in values.items():
        if value is None and skip_none:
            continue
        target = cfg
        *path, name = key.split(".")
        for part in path:
            target = getattr(target, part)
        if not hasattr(target, name):
            raise ConfigError(f"unknown setting {key!r}")
        current = getattr(target, name)
        if isinstance(current, dict) and isinstance(value, dict):  # method options merge
            value = {**current, **value}
        setattr(target, name, value)
    return cfg


def apply_file_settings(cfg: RunConfig, settings: dict[str, Any]) -> RunConfig:
    """Set what a checkpoint file decides; its ``model.options`` replace the options (not merged into
    them: a preset's options for another variant must not survive)."""
    apply(cfg, {k: v for k, v in settings.items() if k != "model.options"})
    if "model.options" in settings:
        cfg.model.options = copy.deepcopy(settings["model.options"])
    return cfg


def check_against_file(given: dict[str, Any], from_file: dict[str, Any]) -> None:
    """A model setting given that differs from what the checkpoint file decides fails, naming both."""
    for key, value in from_file.items():
        if not key.startswith("model."):
            continue
        mine = given.get(key)
        if key == "model.options":
            for name, option in (mine or {}).items():  # an option the file does not hold stays free
                if name in value and str(option).lower() != str(value[name]).lower():
                    raise ConfigError(
                        f"--model-option {name}={option} contradicts the checkpoint, which holds "
                        f"{name}={value[name]}; drop the option"
                    )
        elif mine is not None and mine != value:
            flag = "--" + key.split(".", 1)[1].replace("_", "-")
            raise ConfigError(f"{flag} {mine} contradicts the checkpoint, which holds {value}; drop {flag}")


def _spec(method: str | None):
    from vpr_bench.registry import METHODS, PIPELINES

    for registry in (PIPELINES, METHODS):
        if method and method in registry:
            return registry.get(method).spec
    return None


def method_presets(method: str) -> dict[str, dict[str, Any]]:
    """The preset values a method (or pipeline) registered; none for an unknown name (it fails later,
    where the name is looked up)."""
    spec = _spec(method)
    return spec.presets if spec is not None else {}


def resolve(
    preset: str,
    overrides: dict[str, Any],
    from_file: dict[str, Any] | None = None,
    config_file: dict[str, Any] | None = None,
) -> RunConfig:
    """Preset values, then the recipe's values for the preset (``config.recipe``), then the method's own
    preset values (its sizes and preprocessing win over a recipe's), then a ``--config`` file's settings
    (``config_file``, from ``read_config_file``; its ``preset`` is the caller's to choose), then what a
    checkpoint file decides (``from_file``: its architecture, input size, preprocessing), then the given
    ``overrides``. A model setting given that contradicts the checkpoint file fails."""
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r} is not one of {', '.join(PRESETS)}")
    config_file = {k: v for k, v in (config_file or {}).items() if k != "preset"}
    cfg = apply(RunConfig(preset=preset), copy.deepcopy(PRESETS[preset]))
    method = overrides.get("model.method") or config_file.get("model.method") or cfg.model.method
    recipe = overrides.get("recipe.name") or config_file.get("recipe.name") or cfg.recipe.name
    apply(cfg, copy.deepcopy(recipe_values(recipe, preset)))
    apply(cfg, copy.deepcopy(method_presets(method).get(preset, {})))
    apply(cfg, copy.deepcopy(config_file), skip_none=False)
    if from_file:
        check_against_file(overrides, from_file)
        apply_file_settings(cfg, from_file)
    apply(cfg, overrides)
    cfg.validate()
    return cfg
