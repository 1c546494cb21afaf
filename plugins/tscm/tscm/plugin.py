"""The ``vpr_bench.plugins`` entry point: importing this module registers everything TSCM adds.

Methods ``tscm-teacher`` and ``tscm-student`` (trainable alone like any method), the ``tscm`` pipeline
(teacher → frozen → distilled student; ``ablate``; asymmetric ``eval``), the distillation losses, and the
models' sizes for the ``demo`` and ``paper`` presets.
"""

import functools

from tscm import (
    losses,  # noqa: F401  (registers the kd losses)
    pipeline,
)
from tscm.models import StudentNet, TeacherNet, TSCMOptions
from tscm.release import read_release_checkpoint
from tscm.trainer import DistillationTrainer
from vpr_bench.api import ModelConfig, register_method, register_pipeline

# The paper: ResNet-50 (layer3, 1024 channels) + ViT-B/16, width 512, 64 clusters, 2048-d descriptors.
PAPER = {
    "model.backbone": "resnet50",
    "model.backbone_stage": 3,
    "model.descriptor_dim": 2048,
    "model.options": {"vit": "vit_base_patch16_224", "width": 512, "clusters": 64, "patch_dim": 768},
}
# CPU demo: ResNet-18 (layer3, 256 channels) + ViT-Tiny with 8×8 patches (6×8 tokens from 48×64 images),
# width 128, 16 clusters, 512-d descriptors; the student's patch embedding is 96 wide. The student keeps
# ≤ 1/3 of the teacher's parameters and ≈ 1/4 of its ms/image, as at paper size.
DEMO = {
    "model.backbone": "resnet18",
    "model.backbone_stage": 3,
    "model.descriptor_dim": 512,
    "model.options": {
        "vit": "vit_tiny_patch16_224",
        "vit_patch_size": 8,
        "width": 128,
        "clusters": 16,
        "patch_dim": 96,
        # from scratch the raw concatenation leaves the NetVLADLoupe parts ≈ 1 % of the descriptor's norm
        # (GeM holds the rest) and the teacher learns less than its GeM branch alone; each part holding its
        # share lifted the teacher 15.4 → 17.8 and the cross-metric student 19.2 → 22.4 R@1 (3-seed
        # means, docs/teacher-study.md). The paper preset and the release's files keep the raw concat.
        "balance_parts": True,
    },
    # the training budget is the global demo preset's, the same for every method (config.PRESETS)
}
PRESETS = {"paper": PAPER, "demo": DEMO}
COMMON = {"options": TSCMOptions, "descriptor_dim": True, "presets": PRESETS}


@register_method(
    pipeline.TEACHER,
    "TSCM teacher: ResNet + ViT, inter-transformer fusion, NetVLAD + GeM",
    checkpoint_reader=functools.partial(read_release_checkpoint, role="teacher"),
    **COMMON,
)
def tscm_teacher(cfg: ModelConfig, options: TSCMOptions) -> TeacherNet:
    return TeacherNet(cfg, options)


@register_method(
    pipeline.STUDENT,
    "TSCM student: ResNet + GeM and patch-embedding NetVLAD (distilled)",
    checkpoint_reader=functools.partial(read_release_checkpoint, role="student"),
    trainer=DistillationTrainer,  # distilled from the frozen teacher named by --teacher
    **COMMON,
)
def tscm_student(cfg: ModelConfig, options: TSCMOptions) -> StudentNet:
    return StudentNet(cfg, options)


@register_pipeline("tscm", "TSCM: train teacher, distil student (cross-metric KD), test both", **COMMON)
class TSCMPipeline:
    roles = {"teacher": pipeline.TEACHER, "student": pipeline.STUDENT}
    run = staticmethod(pipeline.run)
    ablate = staticmethod(pipeline.ablate)
    evaluate = staticmethod(pipeline.evaluate)
