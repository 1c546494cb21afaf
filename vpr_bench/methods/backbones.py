"""timm backbones, and the one place where pretrained weights are resolved.

Order: ``--pretrained-file PATH`` (timm's own file loader, ``weights_only``) → timm's ``pretrained=True``
from the hub when it is reachable → the local Hugging Face cache when it is not → a one-line warning
and random initialisation. Never a crash, never a silent fallback: the outcome is returned and recorded.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import socket
from pathlib import Path

import timm
from torch import nn

from vpr_bench.errors import ConfigError

log = logging.getLogger(__name__)
HUB_HOST = "huggingface.co"


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _cached_hub_file(model_name: str) -> str | None:
    """A weight file for ``model_name`` already in the local Hugging Face cache, if any."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None or not cfg.hf_hub_id:
        return None
    for filename in (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin"):
        if filename:
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                return found
    return None


def similar_models(name: str, count: int = 8) -> list[str]:
    """timm models whose names are close to ``name`` once case, ``_``, ``-`` and ``.`` are ignored (the
    same name first, then those it begins, near spellings, those containing it)."""

    def squash(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    spellings: dict[str, list[str]] = {}
    for model in timm.list_models():
        spellings.setdefault(squash(model), []).append(model)
    key = squash(name.split(".")[0])  # without a pretrained tag (resnet50.a1_in1k)
    if not key:
        return []
    shortest_first = sorted(spellings, key=len)
    keys = [
        *([key] if key in spellings else []),
        *[k for k in shortest_first if k.startswith(key)][:3],
        *difflib.get_close_matches(key, list(spellings), n=count, cutoff=0.6),
        *[k for k in shortest_first if key in k][:3],
    ]
    return list(dict.fromkeys(model for k in keys for model in spellings[k]))[:count]


def create_timm_model(
    name: str, pretrained: bool = True, pretrained_file: str | None = None, **kwargs
) -> tuple[nn.Module, str]:
    """``timm.create_model(name, **kwargs)`` with the weights resolved as above; (model, where from)."""
    if not timm.is_model(name):
        close = similar_models(name)
        raise ConfigError(f"--backbone {name!r} is not a timm model (similar: {', '.join(close) or 'none'})")
    create = functools.partial(timm.create_model, name, **kwargs)
    if pretrained_file:
        path = Path(pretrained_file)
        if not path.is_file():
            raise ConfigError(f"--pretrained-file {path} does not exist")
        try:
            model = create(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        except Exception as exc:
            from vpr_bench.checkpoints import unreadable

            raise unreadable(path, exc, "--pretrained-file") from None  # e.g. an HTML page saved as .pth
        return model, f"file:{path}"
    if pretrained and hub_reachable():
        return create(pretrained=True), "pretrained:hub"
    if pretrained and (cached := _cached_hub_file(name)):
        return create(pretrained=True, pretrained_cfg_overlay={"file": cached}), "pretrained:cache"
    if pretrained:
        log.warning(
            "pretrained weights for %s unavailable (hub unreachable, not cached): "
            "random initialisation; pass --pretrained-file PATH to use a local file",
            name,
        )
    return create(pretrained=False), "random"


def normalisation(model: nn.Module) -> dict:
    """The input mean/std the model's weights expect (ImageNet's when timm does not say)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return {
        "mean": tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(cfg.get("std", (0.229, 0.224, 0.225))),
    }


def create_backbone(
    name: str,
    pretrained: bool = True,
    pretrained_file: str | None = None,
    out_index: int | None = None,
    **kwargs,
) -> tuple[nn.Module, dict]:
    """A timm feature extractor returning one feature map, and facts about it.

    ``out_index`` picks the stage (timm ``features_only`` index; ResNet: 3 = after layer3, stride 16);
    ``None`` keeps the last. The facts: ``channels``, ``reduction``, ``weights`` (where weights came from),
    ``mean``/``std`` (the normalisation the weights expect).
    """
    if out_index is not None:
        kwargs["out_indices"] = (out_index,)
    model, weights = create_timm_model(name, pretrained, pretrained_file, features_only=True, **kwargs)
    info = model.feature_info
    facts = {
        "channels": info.channels()[-1],
        "reduction": info.reduction()[-1],
        "weights": weights,
        **normalisation(model),
    }
    return model, facts


def pretrained_backbones(facts: dict, backbone: str, asked: bool) -> dict[str, bool]:
    """Per backbone (its timm name), whether it started from pretrained weights — what was loaded, not
    what was asked for (``--pretrained`` with the hub unreachable starts from random weights). ``facts``:
    a model's ``backbone_facts``, where ``weights`` is the origin of ``backbone``'s weights and a second
    backbone's is ``<part>_weights``, named by ``<part>_model`` (TSCM's teacher: ``vit_weights``,
    ``vit_model``); without facts, what was ``asked``."""
    states = {}
    for key, origin in facts.items():
        if key == "weights":
            name = backbone
        elif key.endswith("_weights"):
            part = key.removesuffix("_weights")
            name = str(facts.get(f"{part}_model", part))
        else:
            continue
        states[name] = not str(origin).startswith("random")
    return states or {backbone: bool(asked)}
