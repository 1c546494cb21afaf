"""Evaluation throughput: the engine's descriptor extraction (files → DataLoader → model → float32 array),
from the image files and from a warm decoded-image cache, vs the bare ``model(x)`` on the same images
already decoded into tensors, in one run.

The ratios say what reading, decoding and batching cost on top of the network (targets: ≥ 0.9 from the
files, ≥ 0.95 from a warm cache, which reads each image's resized pixels instead of decoding its file).
All sides are measured the same way, so that the bare side is a limit: the same model, batches, threads
and device, one untimed warm-up pass each (which also fills the cache), then the best of ``--repeats``
passes, alternating. The bare side does everything the engine does after a batch exists (forward,
L2-normalisation, copy to a float32 array) on tensors decoded beforehand, so it is the engine minus
reading, decoding and batching: ≤ 1.0 by construction, up to timing noise. Images come from the
synthetic dataset (generated into a temporary folder, the cache beside them).

    python benchmarks/eval_throughput.py [--method gem] [--backbone resnet50] [--image-size 224x224]
        [--images 512] [--batch-size 32] [--workers 2] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vpr_bench.config import resolve
from vpr_bench.datasets.image_cache import ImageCache
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


def bare_pass(model, tensors: torch.Tensor, batch_size: int, device: torch.device) -> np.ndarray:
    """The engine's per-batch work on preloaded tensors: forward, normalise, copy into one array."""
    out = None
    with torch.inference_mode():
        for start in range(0, len(tensors), batch_size):
            output = model(tensors[start : start + batch_size].to(device, non_blocking=True))
            output = torch.nn.functional.normalize(output.float(), dim=1)
            if out is None:
                out = np.empty((len(tensors), output.shape[1]), dtype=np.float32)
            out[start : start + len(output)] = output.cpu().numpy()
    return out


def timed(fn, device: torch.device) -> float:
    """Seconds of one call of ``fn`` (on CUDA, its kernels finished)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="gem")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", default="224x224")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.image_size.split("x"))
    cfg = resolve(
        "paper", {"model.method": args.method, "model.backbone": args.backbone, "model.pretrained": False}
    )
    device = torch.device(args.device)
    model = build_method(cfg.model).eval().to(device)
    transform = model_transform(model, size)
    with tempfile.TemporaryDirectory() as tmp:
        paths = image_paths(args.images, Path(tmp))
        tensors = torch.stack([transform(load_rgb(p)) for p in paths])  # preloaded: no I/O, no decoding
        if device.type == "cuda":
            tensors = tensors.pin_memory()

        cached = transform.cached_in(ImageCache(Path(tmp) / "image-cache", transform.stage))

        def engine() -> None:
            extract(model, paths, transform, device, args.batch_size, args.workers, quiet=True)

        def from_cache() -> None:
            extract(model, paths, cached, device, args.batch_size, args.workers, quiet=True)

        def bare() -> None:
            bare_pass(model, tensors, args.batch_size, device)

        sides = (("bare", bare), ("engine", engine), ("cached", from_cache))
        times = {name: [] for name, _ in sides}
        cold_s = {name: timed(fn, device) for name, fn in sides}  # warm-ups (allocator, cuDNN); fill cache
        for _ in range(args.repeats):
            for name, fn in sides:
                times[name].append(timed(fn, device))
    bare_ips, engine_ips, cached_ips = (len(paths) / min(times[k]) for k in ("bare", "engine", "cached"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"{args.method} / {args.backbone}, {size[0]}x{size[1]}, {len(paths)} images, "
        f"batch {args.batch_size}, {args.workers} workers, {name}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeats}"
    )
    print(f"bare forward + normalise on preloaded tensors  : {bare_ips:8.1f} images/s")
    print(f"engine (files -> descriptors)                  : {engine_ips:8.1f} images/s")
    print(f"engine, warm image cache (cache -> descriptors): {cached_ips:8.1f} images/s")
    print(f"engine, cold image cache (one pass, fills it)  : {len(paths) / cold_s['cached']:8.1f} images/s")
    print(f"ratio engine / bare                            : {engine_ips / bare_ips:.2f}  (target >= 0.9)")
    print(f"ratio warm cache / bare                        : {cached_ips / bare_ips:.2f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
