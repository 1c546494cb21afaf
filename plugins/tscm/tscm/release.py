"""The TSCM release's checkpoint files (nubot-nudt/TSCM, ``ckpt_best.pth.tar``) as our teacher and student.

The release's trainer saves ``{'epoch', 'step', 'state_dict', 'optimizer', 'scheduler'}``, the state dict
of its whole ``TeacherNet`` or ``StudentNet`` (``module.``-prefixed under ``nn.DataParallel``). Its key
names differ from ours and so do a few layouts; this module maps them, the way timm's
``checkpoint_filter_fn`` maps an original file onto its model. What the file decides, it sets: the
release's architecture (ResNet-50 to layer3, ViT-B/16 as the release slices it, width 512, 64 clusters,
2048-d, the release's NetVLADLoupe sample reinterpretation), its 224×224 input, and its preprocessing
order. Verified against the release's own outputs (tests/data/tscm_release, see its README).

Layouts that differ, release → ours:
- ``backboneRR``/``backboneR_Stu``: torchvision ResNet children 0 conv1, 1 bn1, 4–6 layer1–3 → timm names;
- ``backboneVV``: ``Sequential(children[:-1])`` of timm's ViT, 0 patch_embed, 4 blocks, 5 norm;
- attention: separate ``q_linear``/``k_linear``/``v_linear``/``out`` → ``nn.MultiheadAttention``'s packed
  ``in_proj`` and ``out_proj``; FFN ``linear_1``/``linear_2`` → ``ffn.0``/``ffn.3``;
- NetVLADLoupe: ``x @ cluster_weights`` (F, K) → a Linear's (K, F) weight; centroids ``cluster_weights2``
  (1, F, K) → (K, F); the VLAD matrix flattened in (F, K) order → ours in (K, F) order, so the rows of
  ``hidden1_weights`` (F·K, out) are permuted; context gating ``x @ gating_weights`` → Linear (transposed);
- GeM ``p`` of shape (1,) → a scalar.
Entries the descriptor never uses are ignored: the re-wrapped ``backboneV``/``backboneR`` aliases, the
``Classification`` head, each NetVLADLoupe's ``bn2``, and in the student the inherited teacher copy and
STUN's ``var_head``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vpr_bench.api import CheckpointError, MethodCheckpoint

TEACHER_MARK = "backbone.backboneVV.0.proj.weight"
STUDENT_MARK = "backboneS.PatchEmbedding.projection.0.weight"
RELEASE_OPTIONS = {
    "vit": "vit_base_patch16_224",
    "width": 512,
    "heads": 4,
    "clusters": 64,
    "patch_dim": 768,
    "patch_size": 16,
    "vit_variant": "release",
    "release_reshape": True,
    "vit_pretrained": False,  # the release builds its ViT with random weights (the file holds them all)
    "balance_parts": False,  # the release concatenates the raw descriptor parts
}
# what a release file decides (the CLI's explicit flags may still override image size and preprocessing)
RELEASE_SETTINGS = {
    "model.backbone": "resnet50",
    "model.backbone_stage": 3,
    "model.descriptor_dim": 2048,
    "model.options": RELEASE_OPTIONS,
    "data.image_size": (224, 224),
    "data.preprocess": "normalize-first",
}
_RESNET = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3"}
_VIT = {"0": "patch_embed", "4": "blocks", "5": "norm"}


def release_role(state: dict) -> str | None:
    """``teacher``/``student`` for a release state dict (``module.`` already stripped), else None."""
    if STUDENT_MARK in state:
        return "student"
    if TEACHER_MARK in state:
        return "teacher"
    return None


def _renamed(key: str, source: str, target: str, table: dict[str, str]) -> str | None:
    """``source.<i>.rest`` → ``target.<table[i]>.rest``."""
    if not key.startswith(source + "."):
        return None
    index, _, rest = key[len(source) + 1 :].partition(".")
    return f"{target}.{table[index]}.{rest}" if index in table else None


def _loupe(release: dict, prefix: str, ours: str) -> dict[str, torch.Tensor]:
    weights = release[f"{prefix}.cluster_weights"]  # (F, K)
    features, clusters = weights.shape
    hidden = release[f"{prefix}.hidden1_weights"]  # (F·K, out), rows in (F, K) order
    out = {
        f"{ours}.vlad.assign.weight": weights.t(),
        f"{ours}.vlad.assign.bias": release[f"{prefix}.cluster_biases"],
        f"{ours}.vlad.centroids": release[f"{prefix}.cluster_weights2"][0].t(),  # (K, F)
        f"{ours}.project.weight": hidden.reshape(features, clusters, -1)
        .transpose(0, 1)
        .reshape(features * clusters, -1)
        .t(),
    }
    if f"{prefix}.context_gating.gating_weights" in release:
        out[f"{ours}.gating.gate.weight"] = release[f"{prefix}.context_gating.gating_weights"].t()
        out[f"{ours}.gating.gate.bias"] = release[f"{prefix}.context_gating.gating_biases"]
    return out


def _attention(release: dict, attn: str, ff: str, ours: str) -> dict[str, torch.Tensor]:
    qkv = [f"{attn}.{name}_linear" for name in ("q", "k", "v")]
    return {
        f"{ours}.attention.in_proj_weight": torch.cat([release[f"{k}.weight"] for k in qkv]),
        f"{ours}.attention.in_proj_bias": torch.cat([release[f"{k}.bias"] for k in qkv]),
        f"{ours}.attention.out_proj.weight": release[f"{attn}.out.weight"],
        f"{ours}.attention.out_proj.bias": release[f"{attn}.out.bias"],
        f"{ours}.ffn.0.weight": release[f"{ff}.linear_1.weight"],
        f"{ours}.ffn.0.bias": release[f"{ff}.linear_1.bias"],
        f"{ours}.ffn.3.weight": release[f"{ff}.linear_2.weight"],
        f"{ours}.ffn.3.bias": release[f"{ff}.linear_2.bias"],
    }


def _resnet(release: dict, source: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in release.items():
        renamed = _renamed(key, source, "resnet.body", _RESNET)
        if renamed is not None:
            out[renamed] = value
    return out


def teacher_state(release: dict) -> dict[str, torch.Tensor]:
    """Our ``TeacherNet`` state dict from the release's (``module.`` stripped); KeyError if incomplete."""
    b = "backbone"
    state = _resnet(release, f"{b}.backboneRR")
    for key, value in release.items():
        renamed = _renamed(key, f"{b}.backboneVV", "vit", _VIT)
        if renamed is not None:
            state[renamed] = value
    state["resnet.gem.p"] = release[f"{b}.gem.p"].reshape(())
    for theirs, ours in (("linear", "vit_proj"), ("linear2", "resnet_proj")):
        state[f"{ours}.weight"] = release[f"{b}.{theirs}.weight"]
        state[f"{ours}.bias"] = release[f"{b}.{theirs}.bias"]
    # fuse1 = V + attn1(q=V, k=R, v=R) then ff1; fuse2 = R + attn2(q=R, k=V, v=V) then ff2
    state.update(_attention(release, f"{b}.attn1", f"{b}.ff1", "encoder.vit_from_resnet"))
    state.update(_attention(release, f"{b}.attn2", f"{b}.ff2", "encoder.resnet_from_vit"))
    state.update(_loupe(release, f"{b}.net_vlad_R", "resnet_vlad"))
    state.update(_loupe(release, f"{b}.net_vlad", "fused_vlad"))
    state.update(_loupe(release, f"{b}.net_vlad_V", "vit_vlad"))
    return state


def student_state(release: dict) -> dict[str, torch.Tensor]:
    """Our ``StudentNet`` state dict from the release's (``module.`` stripped); KeyError if incomplete."""
    s = "backboneS"
    state = _resnet(release, f"{s}.backboneR_Stu")
    state["resnet.gem.p"] = release[f"{s}.gem.p"].reshape(())
    state["patch_embed.weight"] = release[f"{s}.PatchEmbedding.projection.0.weight"]
    state["patch_embed.bias"] = release[f"{s}.PatchEmbedding.projection.0.bias"]
    state["patch_proj.weight"] = release[f"{s}.linear0.weight"]
    state["patch_proj.bias"] = release[f"{s}.linear0.bias"]
    state.update(_loupe(release, f"{s}.net_vlad", "patch_vlad"))
    return state


def strip_module_prefix(state: dict) -> dict:
    """``nn.DataParallel`` saves every key as ``module.<key>``."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def read_release_checkpoint(obj, path: Path, role: str) -> MethodCheckpoint | None:
    """A release ``ckpt_best.pth.tar`` (already loaded weights-only) for ``role``; None if ``obj`` is
    not a release file (the caller then reads it as one of ours)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        return None
    release = strip_module_prefix(obj["state_dict"])
    found = release_role(release)
    if found is None:
        return None
    if found != role:
        raise CheckpointError(
            f"{path} is a TSCM release {found} checkpoint, not a {role}: use --method tscm-{found}"
        )
    build = teacher_state if role == "teacher" else student_state
    try:
        state = build(release)
    except KeyError as exc:
        raise CheckpointError(
            f"{path} looks like a TSCM release {role} checkpoint but lacks {exc.args[0]!r} "
            "(expected the release's full TeacherNet/StudentNet state dict)"
        ) from None
    epoch = obj.get("epoch")
    described = f"TSCM release checkpoint {path.name}" + (f", epoch {epoch}" if epoch is not None else "")
    return MethodCheckpoint(path, state, dict(RELEASE_SETTINGS), described)
