"""Evaluation throughput: the engine's descriptor extraction (files → DataLoader → model → float32 array)
vs the bare ``model(x)`` on the same images already decoded into tensors, in one run.

The ratio says what reading, decoding and batching cost on top of the network (target ≥ 0.9). Images
come from the synthetic dataset (generated into a temporary folder unless --images DIR is given).

    python benchmarks/eval_throughput.py [--method gem] [--backbone resnet50] [--image-size 224x224]
        [--images 512] [--batch-size 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vpr_bench.config import resolve
from vpr_bench.datasets.images import load_rgb, model_transform
from vpr_bench.evaluation.descriptors import extract
from vpr_bench.methods import build_method


def image_paths(count: int, folder: Path) -> list[Path]:
    from vpr_bench.datasets.synthetic import SynthConfig, generate

    root = generate(
        folder / "synthetic", SynthConfig(places=max(40, count // 3), queries=20, seed=0), workers=2
    )
    paths = sorted((root / "images").rglob("*.jpg"))
    return paths[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="gem")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", default="224x224")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.image_size.split("x"))
    cfg = resolve(
        "paper", {"model.method": args.method, "model.backbone": args.backbone, "model.pretrained": False}
    )
    model = build_method(cfg.model).eval()
    transform = model_transform(model, size)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        paths = image_paths(args.images, Path(tmp))
        tensors = torch.stack([transform(load_rgb(p)) for p in paths])  # preloaded: no I/O, no decoding
        with torch.inference_mode():  # warm-up
            model(tensors[: args.batch_size])
            started = time.perf_counter()
            for start in range(0, len(tensors), args.batch_size):
                model(tensors[start : start + args.batch_size])
            bare = len(tensors) / (time.perf_counter() - started)
        started = time.perf_counter()
        extract(model, paths, transform, device, args.batch_size, args.workers, quiet=True)
        engine = len(paths) / (time.perf_counter() - started)
    print(
        f"{args.method} / {args.backbone}, {size[0]}x{size[1]}, {len(paths)} images, "
        f"batch {args.batch_size}, {args.workers} workers, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"bare model(x) on preloaded tensors : {bare:8.1f} images/s")
    print(f"engine (files -> descriptors)      : {engine:8.1f} images/s")
    print(f"ratio                              : {engine / bare:.2f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
