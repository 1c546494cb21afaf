"""Peak memory of a Pitts250k-size evaluation: ≈84k database × 8k queries at the paper's 2048-d.

Makes (once) a synthetic test split of that size (`vpr-bench datasets synth --splits test`, small
images), then runs `vpr-bench eval` in a child process with a small model projected to 2048-d — the point
is the pipeline's memory and time, not the model — with the exact search on torch (`--index flat`, then
`--index flat-fp16`: the database stored as float16) and with IVF-PQ.
Prints wall time, the record's peak RSS of the main process (and of its extraction and search phases),
and the peak RSS of any process of the run (DataLoader workers included, from
``getrusage(RUSAGE_CHILDREN)``: a running maximum over the variants). Target (issue [5/5]): < 4 GiB.

    python benchmarks/memory.py [--data datasets/synthetic-250k] [--places 84000] [--queries 8000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def vpr_bench(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "vpr_bench", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="datasets/synthetic-250k")
    parser.add_argument("--places", type=int, default=84000)
    parser.add_argument("--queries", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    data = Path(args.data)
    started = time.perf_counter()
    vpr_bench(
        "datasets", "synth", "--splits", "test", "--places", str(args.places),
        "--queries", str(args.queries), "--out", str(data),
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    print(f"dataset {data}: {args.places} database / {args.queries} queries ({elapsed:.0f} s)")
    common = [
        "eval", "--method", "gem", "--dataset", f"folder:{data}", "--backbone", "resnet18",
        "--backbone-stage", "3", "--descriptor-dim", "2048", "--no-pretrained", "--image-size", "48x64",
        "--eval-batch-size", "128", "--num-workers", str(args.workers), "--quiet",
    ]  # fmt: skip
    variants = (
        ["--index", "flat"],
        ["--index", "flat-fp16"],
        ["--index", "ivfpq", "--nlist", "1024", "--m", "64"],
    )
    for index in variants:
        with tempfile.TemporaryDirectory() as out:
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            started = time.perf_counter()
            vpr_bench(*common, *index, "--out", out)
            seconds = time.perf_counter() - started
            children_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
            (metrics,) = Path(out).glob("*/*/*/metrics.json")
            record = json.loads(metrics.read_text())
        cost, protocol = record["cost"], record["protocol"]
        phases = cost.get("memory") or {}
        extract_mb, search_mb = (phases.get(f"{p}_peak_rss_mb", 0) for p in ("extract", "search"))
        print(
            f"{protocol['index']:<42} {seconds:7.0f} s   main peak RSS {cost['peak_rss_mb']:7.0f} MB "
            f"(extract {extract_mb:.0f}, search {search_mb:.0f})   any process so far {children_mb:7.0f} MB"
            f"   R@1 {record['metrics']['R@1']:.1f}   ms/query {cost['ms_per_query']:.3f}"
            "   (target < 4096 MB)"
        )


if __name__ == "__main__":
    main()
