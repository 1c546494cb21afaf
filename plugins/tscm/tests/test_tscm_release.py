"""The TSCM models compute what the authors' release computes, loaded from the release's own checkpoint files.

Fixture (tests/data/tscm_release, copied from shared/data/reference_models/tscm_release; see its README):
outputs of the release's unmodified code with weights rebuilt from each key name by a recipe. Here the
state dicts are rebuilt by that recipe, written as the release's trainer writes them (``torch.save`` of
``{'epoch', 'step', 'state_dict', 'optimizer', 'scheduler'}`` with the whole module's keys and their
aliases, with and without ``nn.DataParallel``'s ``module.`` prefix), read through the same path as a
user's ``--checkpoint`` / ``--teacher`` file, and run on the fixture's input.

Tolerances: each branch ≤ 1e-5 of its own largest value, each descriptor ≤ 1e-5 absolute. Measured: VLAD
branches ≈ 1e-6 relative (float32 summation order in matrix products), GeM and descriptors exact to
1e-8. The three fixes this guards (final ViT LayerNorm, NetVLADLoupe assignment bias, token-major patch
reading) each move their branch by 1e-2 or more of its scale: the mutation checks below show it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from tscm.release import RELEASE_SETTINGS

from vpr_bench.api import CheckpointError, load_model, read_method_checkpoint
from vpr_bench.api import resolve_config as resolve
from vpr_bench.testing import TINY_CLI, recipe_tensor, reference_input, relative_error, run_cli

DATA = Path(__file__).parent / "data" / "tscm_release"
BRANCH_TOLERANCE = 1e-5  # relative to the branch's largest value
DESCRIPTOR_TOLERANCE = 1e-5  # absolute (unit-norm descriptors)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(DATA / "reference_small.npz") as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def images(reference) -> torch.Tensor:
    raw = reference_input(224, 224)
    assert np.array_equal(raw.numpy(), reference["input_raw"])  # the seed still gives the fixture's input
    return (raw - MEAN) / STD


def release_state_dict(role: str) -> dict[str, torch.Tensor]:
    """The release's whole-module state dict: descriptor-path tensors by the recipe, each alias sharing its
    canonical tensor (as in a real saved file), unused entries (the student's teacher copy, ``bn2``…)
    filled with stride-0 zeros so the file stays small."""
    canonical = {
        k: recipe_tensor(k, s, d) for k, s, d in json.loads((DATA / f"{role}_keys.json").read_text())
    }
    aliases = json.loads((DATA / f"{role}_full_aliases.json").read_text())
    state = {}
    for key, shape, dtype in json.loads((DATA / f"{role}_full_keys.json").read_text()):
        target = aliases.get(key)
        if target is not None:
            state[key] = canonical[target]
        else:
            state[key] = torch.zeros(1, dtype=getattr(torch, dtype)).reshape([1] * len(shape)).expand(shape)
    return state


def write_release_checkpoint(path: Path, role: str, data_parallel: bool, epoch: int = 7) -> Path:
    state = release_state_dict(role)
    if data_parallel:
        state = {f"module.{k}": v for k, v in state.items()}
    optimizer = {
        "state": {},
        "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "weight_decay": 1e-3, "params": [0, 1]}],
    }
    scheduler = {"gamma": 0.99, "base_lrs": [1e-5], "last_epoch": epoch, "_step_count": epoch + 1}
    payload = {
        "epoch": epoch,
        "step": 1234,
        "state_dict": state,
        "optimizer": optimizer,
        "scheduler": scheduler,
    }
    torch.save(payload, path)
    return path


def load_as_user(method: str, path: Path):
    """What ``vpr-bench eval --method METHOD --checkpoint PATH`` does before reading the dataset."""
    read = read_method_checkpoint(method, path)
    cfg = resolve("demo", {"model.method": method}, read.settings)
    return load_model(cfg, read, file_decides=False)[0].eval(), read, cfg


def branches(model, images: torch.Tensor, role: str) -> dict[str, np.ndarray]:
    """Each branch the fixture holds, caught with forward hooks, and the descriptor."""
    seen: dict[str, torch.Tensor] = {}

    def keep(name, pick=lambda output: output):
        return lambda module, inputs, output: seen.__setitem__(name, pick(output))

    if role == "teacher":
        hooks = [
            model.resnet_vlad.register_forward_hook(keep("teacher_branch0_resnet_vlad")),
            model.fused_vlad.register_forward_hook(keep("teacher_branch1_fused_vlad")),
            model.vit_vlad.register_forward_hook(keep("teacher_branch2_vit_vlad")),
            model.resnet.register_forward_hook(keep("teacher_branch3_resnet_gem", lambda o: o[1])),
        ]
    else:
        hooks = [
            model.patch_vlad.register_forward_hook(keep("student_patch_vlad")),
            model.patch_proj.register_forward_hook(keep("student_branch0_patch")),
            model.resnet.register_forward_hook(keep("student_branch1_gem", lambda o: o[1])),
        ]
    with torch.no_grad():
        seen[f"{role}_descriptor"] = model(images)
    for hook in hooks:
        hook.remove()
    return {k: v.numpy() for k, v in seen.items()}


def errors(found: dict, reference: dict) -> dict[str, float]:
    return {k: relative_error(v, reference[k]) for k, v in found.items() if not k.endswith("descriptor")}


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "module-prefix"])
def teacher_file(request, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("release")
    return write_release_checkpoint(folder / "ckpt_best.pth.tar", "teacher", request.param)


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "module-prefix"])
def student_file(request, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("release")
    return write_release_checkpoint(folder / "ckpt_best.pth.tar", "student", request.param)


def test_release_teacher_checkpoint_computes_the_release_outputs(teacher_file, reference, images):
    teacher, read, cfg = load_as_user("tscm-teacher", teacher_file)
    assert read.description == "TSCM release checkpoint ckpt_best.pth.tar, epoch 7"
    assert cfg.model.options["vit_variant"] == "release" and cfg.data.preprocess == "normalize-first"
    keys = json.loads((DATA / "teacher_keys.json").read_text())
    release_params = sum(
        np.prod(s, dtype=int) for k, s, _ in keys if "running_" not in k and "num_batches" not in k
    )
    assert sum(p.numel() for p in teacher.parameters()) == release_params  # nothing more, nothing less
    found = branches(teacher, images, "teacher")
    assert max(errors(found, reference).values()) <= BRANCH_TOLERANCE, errors(found, reference)
    assert np.abs(found["teacher_descriptor"] - reference["teacher_descriptor"]).max() <= DESCRIPTOR_TOLERANCE


def test_release_student_checkpoint_computes_the_release_outputs(student_file, reference, images):
    student, read, _ = load_as_user("tscm-student", student_file)
    found = branches(student, images, "student")
    assert max(errors(found, reference).values()) <= BRANCH_TOLERANCE, errors(found, reference)
    assert np.abs(found["student_descriptor"] - reference["student_descriptor"]).max() <= DESCRIPTOR_TOLERANCE


# ---- mutation checks: undoing any one fix moves its branch far beyond the tolerance -----------------


@pytest.fixture(scope="module")
def release_teacher(tmp_path_factory):
    path = write_release_checkpoint(tmp_path_factory.mktemp("release") / "t.pth.tar", "teacher", False)
    return load_as_user("tscm-teacher", path)[0]


def test_mutation_vit_without_its_final_layernorm_is_caught(release_teacher, reference, images):
    norm, release_teacher.vit.norm = release_teacher.vit.norm, nn.Identity()
    try:
        found = errors(branches(release_teacher, images, "teacher"), reference)
    finally:
        release_teacher.vit.norm = norm
    assert found["teacher_branch2_vit_vlad"] > 100 * BRANCH_TOLERANCE


def test_mutation_netvlad_without_assignment_bias_is_caught(release_teacher, reference, images):
    loupes = [release_teacher.resnet_vlad, release_teacher.fused_vlad, release_teacher.vit_vlad]
    saved = [loupe.vlad.assign.bias.detach().clone() for loupe in loupes]
    with torch.no_grad():
        for loupe in loupes:
            loupe.vlad.assign.bias.zero_()
    try:
        found = errors(branches(release_teacher, images, "teacher"), reference)
    finally:
        with torch.no_grad():
            for loupe, bias in zip(loupes, saved, strict=True):
                loupe.vlad.assign.bias.copy_(bias)
    for name in ("teacher_branch0_resnet_vlad", "teacher_branch1_fused_vlad", "teacher_branch2_vit_vlad"):
        assert found[name] > 100 * BRANCH_TOLERANCE, found


def test_mutation_student_patch_map_read_per_channel_is_caught(student_file, reference, images):
    student = load_as_user("tscm-student", student_file)[0]
    loupe = student.patch_vlad
    with torch.no_grad():
        patches = student.patch_embed(images)  # (B, 768, 14, 14)
        per_channel = patches.reshape(len(images), -1, loupe.release_dim)  # 768 maps of 14×14
        wrong = loupe.gating(loupe.project(loupe.vlad(per_channel)))
        right = loupe(patches)
    assert relative_error(right.numpy(), reference["student_patch_vlad"]) <= BRANCH_TOLERANCE
    assert relative_error(wrong.numpy(), reference["student_patch_vlad"]) > 100 * BRANCH_TOLERANCE


# ---- what a user sees with a wrong file ------------------------------------------------------------


def test_a_student_file_given_as_teacher_names_the_right_method(student_file):
    with pytest.raises(
        CheckpointError, match="release student checkpoint, not a teacher: use --method tscm-student"
    ):
        read_method_checkpoint("tscm-teacher", student_file)


def test_an_incomplete_release_file_names_the_missing_key(tmp_path):
    state = {"backboneS.PatchEmbedding.projection.0.weight": torch.zeros(768, 3, 16, 16)}
    torch.save({"epoch": 1, "state_dict": state}, tmp_path / "ckpt.pth.tar")
    with pytest.raises(CheckpointError, match="lacks 'backboneS.gem.p'"):
        read_method_checkpoint("tscm-student", tmp_path / "ckpt.pth.tar")


def test_a_foreign_file_fails_naming_expected_missing_and_unexpected_keys(tmp_path):
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    read = read_method_checkpoint("tscm-student", tmp_path / "other.pth")
    cfg = resolve("demo", {"model.method": "tscm-student", "model.pretrained": False}, RELEASE_SETTINGS)
    with pytest.raises(
        CheckpointError, match=r"does not fit a tscm-student model \(\d+ keys expected\).*missing"
    ):
        load_model(cfg, read, file_decides=False)


@pytest.fixture(scope="module")
def one_student_file(tmp_path_factory) -> Path:
    return write_release_checkpoint(tmp_path_factory.mktemp("release") / "ckpt_best.pth.tar", "student", True)


def test_an_option_contradicting_the_file_fails_in_one_line(one_student_file, capsys):
    student_file = one_student_file
    code, _, err = run_cli(
        [
            "eval",
            "--method",
            "tscm-student",
            "--dataset",
            "corridor",
            "--checkpoint",
            str(student_file),
            "--model-option",
            "vit_variant=timm",
        ],
        capsys,
    )
    assert (
        code != 0
        and "vit_variant=timm contradicts the checkpoint" in err
        and len(err.strip().splitlines()) == 1
    )


def test_cli_evaluates_a_release_student_file_at_the_release_protocol(one_student_file, capsys):
    """The record says which file and epoch, and holds the release's input size and preprocessing."""
    student_file = one_student_file
    code, out, err = run_cli(
        [
            "eval",
            "--method",
            "tscm-student",
            "--dataset",
            "corridor",
            "--checkpoint",
            str(student_file),
            *TINY_CLI[TINY_CLI.index("--num-workers") :],
        ],
        capsys,
    )
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1].split("record written to ")[1])
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["weights"] == "TSCM release checkpoint ckpt_best.pth.tar, epoch 7"
    assert record["protocol"]["image_size"] == [224, 224]
    assert record["protocol"]["preprocess"] == "normalize-first"
    assert record["cost"]["descriptor_dim"] == 2048


def test_run_teacher_option_takes_a_release_file(tmp_path, reference, images):
    """``run --method tscm --teacher ckpt_best.pth.tar``: the frozen teacher is the release's network."""
    from tscm.trainer import load_teacher

    path = write_release_checkpoint(tmp_path / "ckpt_best.pth.tar", "teacher", True, epoch=3)
    cfg = resolve("paper", {"model.method": "tscm", "distill.teacher": str(path)})
    teacher = load_teacher(cfg)
    assert teacher.weights == "TSCM release checkpoint ckpt_best.pth.tar, epoch 3"
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        descriptor = teacher(images).numpy()
    assert np.abs(descriptor - reference["teacher_descriptor"]).max() <= DESCRIPTOR_TOLERANCE
