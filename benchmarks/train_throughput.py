"""Training throughput: `vpr-bench run`'s loop vs bare forward + backward on preloaded tensors, and where
the loop's time goes (cache refresh, mining, optimisation steps, validation, checkpoints), in one run.

For each size (the demo's TSCM at 48×64, and the paper's at 224×224 on a small synthetic set), for the
teacher and then the student distilled from it:
1. ``train_run`` trains it for ``--epochs`` epochs into a temporary results folder; the record's
   ``training.time_split_s`` gives the wall time of each phase, ``budget.images_seen`` the images
   the optimisation steps took in (query + positive + negatives of every tuple);
2. the bare limit: the same model, batch shape (tuples × (2 + negatives) images), loss and optimiser,
   stepping on random tensors already in memory (no files, no decoding, no mining), best of 3 timings
   of ``--steps`` steps after 2 warm-up steps.
Printed: each phase's seconds and share; the loop's images/s (images seen / training wall time) and the
optimisation phase's alone, each as a ratio to the bare limit; the model's forward ms/image (the test
evaluation's timing pass). The student's teacher descriptors come from the teacher run's descriptor
store: the first student computes them (``teacher cache`` phase), a second student (``--students 2``)
reads them back, and the printed before/after ratio is that phase's time in the two.

    python benchmarks/train_throughput.py [--models demo,paper] [--epochs 2] [--steps 5] [--students 2]
        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from vpr_bench import load_all
from vpr_bench.config import resolve
from vpr_bench.losses import build_loss
from vpr_bench.methods import build_method
from vpr_bench.training.optim import build_optimizer

MODELS = {
    # the demo's teacher on the demo's synthetic set (generated once into datasets/)
    "demo": {"preset": "demo", "overrides": {}},
    # the paper's teacher (ResNet-50 + ViT-B/16, 224×224) on a small synthetic set: a few tuples an epoch
    "paper": {
        "preset": "paper",
        "overrides": {
            "train.lr": 1e-5,
            "train.negatives": 3,
            "train.batch_size": 2,
            "train.queries_per_epoch": 8,
            "eval.batch_size": 8,
        },
        "synth": {"places": 24, "queries": 12, "train_factor": 1.0},
    },
}


def config(name: str, data_root: str | None, epochs: int, out: str, device: str, method: str):
    spec = MODELS[name]
    overrides = {
        "model.method": method,
        "eval.device": device,
        "model.pretrained": False,
        "data.dataset": "synthetic" if data_root is None else f"folder:{data_root}",
        "train.epochs": epochs,
        "train.patience": epochs + 1,
        "quiet": True,
        "out": out,
        **spec["overrides"],
    }
    return resolve(spec["preset"], overrides)


def bare_images_per_s(cfg, steps: int) -> float:
    """Forward + triplet loss + backward + optimiser step on random tensors already in memory."""
    torch.manual_seed(0)
    device = torch.device(cfg.eval.device)
    model = build_method(cfg.model).train().to(device)
    optimizer, _ = build_optimizer(model, cfg.train)
    loss_fn = build_loss(cfg.train.loss, margin=cfg.train.margin, distance=cfg.train.distance)
    tuples, negatives = cfg.train.batch_size, cfg.train.negatives
    per_tuple = 2 + negatives
    images = torch.randn(tuples * per_tuple, 3, *cfg.data.image_size, device=device)
    anchors, positives, negs = [], [], []
    for t in range(tuples):  # the engine's layout: [query, positive, negatives…] per tuple
        base = t * per_tuple
        for n in range(negatives):
            anchors.append(base)
            positives.append(base + 1)
            negs.append(base + 2 + n)
    triplets = tuple(torch.tensor(v, device=device) for v in (anchors, positives, negs))

    def step() -> None:
        loss = loss_fn(model(images), indices_tuple=triplets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        step()
    best = float("inf")
    for _ in range(3):
        sync()
        started = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        best = min(best, time.perf_counter() - started)
    return steps * len(images) / best


def train_once(cfg) -> dict:  # the record, with "run_dir"
    from vpr_bench.runner import train_run

    run_dir = train_run(cfg)
    record = json.loads((Path(run_dir) / "metrics.json").read_text())
    return {**record, "run_dir": str(run_dir)}


def synth_root(name: str, tmp: Path) -> str | None:
    synth = MODELS[name].get("synth")
    if synth is None:
        return None
    from vpr_bench.datasets.synthetic import SynthConfig, generate

    return str(generate(tmp / f"synthetic-{name}", SynthConfig(**synth, seed=0), workers=2))


def report(record: dict, bare: float, label: str) -> dict:
    split = record["training"]["time_split_s"]
    total = sum(split.values())
    images = record["budget"]["images_seen"]
    print(
        f"  {label}: {record['budget']['epochs']} epochs, {images} images in optimisation steps, "
        f"training wall {total:.1f} s; forward {record['cost']['ms_per_image']:.2f} ms/image, "
        f"{record['cost']['params'] / 1e6:.2f} M parameters"
    )
    for phase, seconds in sorted(split.items(), key=lambda kv: -kv[1]):
        print(f"    {phase:<14} {seconds:8.1f} s  {100 * seconds / total:5.1f} %")
    loop = images / total
    optimisation = images / max(split.get("optimisation", 0.0), 1e-9)
    print(
        f"    loop images/s {loop:7.1f}  = {loop / bare:.2f} x bare; optimisation phase alone "
        f"{optimisation:7.1f} = {optimisation / bare:.2f} x bare"
    )
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="demo,paper")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--students", type=int, default=2, help="Students distilled from the teacher.")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    load_all()
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            root = synth_root(name, Path(tmp))
            out = str(Path(tmp) / "results")
            teacher_cfg = config(name, root, args.epochs, out, args.device, "tscm-teacher")
            student_cfg = config(name, root, args.epochs, out, args.device, "tscm-student")
            h, w = teacher_cfg.data.image_size
            print(
                f"{name}: {teacher_cfg.model.backbone} + {teacher_cfg.model.options.get('vit')}, {h}x{w}, "
                f"{teacher_cfg.train.batch_size} tuples x {2 + teacher_cfg.train.negatives} images a step"
            )
            bare = bare_images_per_s(teacher_cfg, args.steps)
            print(f"  teacher: bare forward+backward on preloaded tensors {bare:7.1f} images/s")
            teacher = train_once(teacher_cfg)
            report(teacher, bare, "teacher, vpr-bench run")
            bare = bare_images_per_s(student_cfg, args.steps)
            print(f"  student: bare forward+backward on preloaded tensors {bare:7.1f} images/s")
            student_cfg.distill.teacher = teacher["run_dir"]
            splits = [
                report(train_once(student_cfg), bare, f"student {i + 1}, vpr-bench run")
                for i in range(args.students)
            ]
            if len(splits) > 1:
                first, again = splits[0].get("teacher cache", 0.0), splits[-1].get("teacher cache", 0.0)
                print(
                    f"  teacher descriptors: computed {first:.1f} s, read back {again:.2f} s "
                    f"(before/after {first / max(again, 1e-3):.0f}x); student training wall "
                    f"{sum(splits[0].values()):.1f} s -> {sum(splits[-1].values()):.1f} s "
                    f"({sum(splits[0].values()) / sum(splits[-1].values()):.2f}x)"
                )


if __name__ == "__main__":
    main()
