"""Why is the TSCM teacher weak on the demo, and what does distillation add? One variable at a time,
equal budget, three seeds.

Every experiment trains once per seed on one dataset and preset (default: the embedded ``synthetic``
dataset, ``demo`` preset, 48×64 images, from scratch: ``--no-pretrained`` is passed explicitly, so a
networked machine computes the same figures), with the same epochs, queries per epoch, batch and negatives
for every method, into its own results folder. The ``tscm*`` experiments train a teacher, then its
students side by side (cross-metric; no distillation mined in the teacher's space, as released; no
distillation mined in its own space). Writes every run as one CSV row (``--csv``) and a Markdown table of
seed means (mean ± sample std) computed from those rows (``--output``).

    python experiments/teacher_study.py [--dataset synthetic] [--preset demo] [--data-root DIR]
        [--pretrained | --no-pretrained] [--seeds 1,2,3] [--jobs 2] [--device auto]
        [--results results-study] [--output docs/teacher-study/table.md]
        [--csv docs/teacher-study/runs.csv] [--only NAME,...] [--epochs N]

At paper scale (a GPU, Pittsburgh30k): ``--dataset pitts30k --data-root /data/pitts30k --preset paper``
(ImageNet weights by default there).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# the release's raw concatenation of the descriptor parts (the demo preset balances them since this study)
RAW = ["--model-option", "balance_parts=false"]
BALANCED = ["--model-option", "balance_parts=true"]
# name, question, arguments (after `vpr-bench run --dataset D --preset P`)
EXPERIMENTS = [
    ("tscm", "the paper's pipeline: the teacher (raw concatenation), then its students",
     ["run", "--method", "tscm-teacher", *RAW]),
    ("gem", "baseline: ResNet-18 layer3 + GeM", ["run", "--method", "gem"]),
    ("netvlad", "baseline: ResNet-18 layer2 + NetVLAD (k-means init, soft assignment)",
     ["run", "--method", "netvlad"]),
    ("teacher-gem-only", "the teacher's ResNet+GeM branch alone (vs the gem baseline)",
     ["run", "--method", "tscm-teacher", "--model-option", "parts=gem", *RAW]),
    ("teacher-no-vit", "no ViT branch, no fusion: ResNet NetVLADLoupe + GeM",
     ["run", "--method", "tscm-teacher", "--model-option", "parts=resnet_vlad,gem", *RAW]),
    ("teacher-no-fusion", "both branches, no fusion encoder",
     ["run", "--method", "tscm-teacher", "--model-option", "parts=resnet_vlad,vit_vlad,gem", *RAW]),
    ("teacher-no-gem", "the three NetVLADLoupe heads alone (no GeM part)",
     ["run", "--method", "tscm-teacher", "--model-option", "parts=resnet_vlad,fused_vlad,vit_vlad", *RAW]),
    ("teacher-lr3e-4", "the whole teacher at a third of the demo learning rate",
     ["run", "--method", "tscm-teacher", "--lr", "3e-4", *RAW]),
    ("tscm-balanced", "the pipeline with every descriptor part holding its share of the norm",
     ["run", "--method", "tscm-teacher", *BALANCED]),
    ("teacher-balanced-no-gem", "the three NetVLADLoupe heads alone, balanced",
     ["run", "--method", "tscm-teacher", "--model-option", "parts=resnet_vlad,fused_vlad,vit_vlad",
      *BALANCED]),
    ("teacher-kmeans", "balanced teacher, its three NetVLADLoupe heads k-means-initialised on their tokens",
     ["run", "--method", "tscm-teacher", *BALANCED, "--model-option", "loupe_init=kmeans"]),
]  # fmt: skip

# the students of each "tscm*" teacher: label, arguments
STUDENTS = [
    ("cross-metric", ["--kd-loss", "cross-metric"]),
    ("none", ["--kd-loss", "none"]),
    ("none-own-space", ["--kd-loss", "none", "--mining-space", "student"]),
]
SLOTS = threading.Semaphore(1)  # runs at a time (--jobs)


def command(args: list[str], seed: int, out: Path, opts: argparse.Namespace) -> list[str]:
    extra = ["--epochs", str(opts.epochs), "--patience", str(opts.epochs)] if opts.epochs else []
    data = ["--data-root", opts.data_root] if opts.data_root else []
    pretrained = "--pretrained" if opts.pretrained else "--no-pretrained"
    return [
        sys.executable, "-m", "vpr_bench", *args[:1], "--dataset", opts.dataset, *data,
        "--preset", opts.preset, pretrained, "--seed", str(seed), "--device", opts.device, "--quiet",
        "--out", str(out), *args[1:], *extra,
    ]  # fmt: skip


def run_job(name: str, cmd: list[str], log_dir: Path, deadline: float) -> int:
    """Run one command when a slot is free (killed at ``deadline``, a ``time.monotonic()``); its exit
    code (-1: skipped or killed at the deadline)."""
    with SLOTS:
        if time.monotonic() >= deadline:
            print(f"{name}: skipped (deadline)", flush=True)
            return -1
        started = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        with open(log_dir / f"{name}.log", "w") as handle:
            process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
            try:
                code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = -1
        print(f"{name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        return code


def pipeline_job(name, cmd, out: Path, log_dir: Path, deadline: float, pool) -> int:
    """The teacher, then its students side by side (each distilled from this seed's teacher, with the
    teacher's model options)."""
    code = run_job(name, cmd, log_dir, deadline)
    seed = int(cmd[cmd.index("--seed") + 1])
    mine = [p.parent for p in sorted(out.glob("*/tscm-teacher/*/metrics.json"), key=os.path.getmtime)
            if json.loads(p.read_text()).get("seed") == seed]  # fmt: skip
    if code or not mine:
        return code or 1
    student = [*cmd[: cmd.index("--method")], "--method", "tscm-student", "--teacher", str(mine[-1])]
    rest = cmd[cmd.index("--method") + 2 :]
    jobs = [
        pool.submit(run_job, f"{name}-{label}", [*student, *args, *rest], log_dir, deadline)
        for label, args in STUDENTS
    ]
    return max(job.result() for job in jobs)


COLUMNS = ["experiment", "method", "kd_loss", "mining_space", "variant", "seed", "R@1", "R@5", "R@10",
           "best_val_R@1", "epochs", "params_M", "gflops", "device", "wall_s", "run"]  # fmt: skip


def run_rows(results: Path) -> list[dict]:
    """One row per finished run under ``results/<experiment>/``."""
    rows = []
    for name, _, _ in EXPERIMENTS:
        for metrics in sorted((results / name).glob("*/*/*/metrics.json")):
            record = json.loads(metrics.read_text())
            config = json.loads((metrics.parent / "config.json").read_text())
            distill, training = record.get("distillation") or {}, record.get("training") or {}
            budget, cost = record.get("budget") or {}, record.get("cost") or {}
            m = record["metrics"]
            rows.append({
                "experiment": name, "method": record["method"], "kd_loss": distill.get("kd_loss", ""),
                "mining_space": config["distill"]["mining_space"] if distill else "",
                "variant": record.get("variant", ""), "seed": record["seed"],
                "R@1": m["R@1"], "R@5": m["R@5"], "R@10": m["R@10"],
                "best_val_R@1": training.get("best_val_R@1", ""), "epochs": training.get("epochs", ""),
                "params_M": round(cost.get("params", 0) / 1e6, 2),
                "gflops": round(cost.get("gflops_per_image") or 0, 3),
                "device": budget.get("device", ""),
                "wall_s": round(budget.get("wall_s") or 0), "run": metrics.parent.name,
            })  # fmt: skip
    return rows


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f}" if values else "—"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(rows: list[dict], opts: argparse.Namespace) -> str:
    """Seed means of the rows, one line per (experiment, model, KD loss, mining space)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["experiment"], row["method"], row["kd_loss"], row["mining_space"])
        groups.setdefault(key, []).append(row)
    questions = {name: question for name, question, _ in EXPERIMENTS}
    lines = [
        "| experiment | model (KD loss, mining space) | question | seeds | R@1 | R@5 | R@10 | params (M) |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for (name, method, kd, space), runs in groups.items():
        model = method + (f" ({kd}, mined in the {space}'s space)" if kd else "")
        seeds = ",".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
        cells = [mean_std([float(r[k]) for r in runs]) for k in ("R@1", "R@5", "R@10")]
        lines.append(f"| {name} | {model} | {questions[name]} | {seeds} | {' | '.join(cells)} | "
                     f"{runs[0]['params_M']} |")  # fmt: skip
    devices = sorted({r["device"] for r in rows})
    lines += [
        "",
        f"Every run: `--dataset {opts.dataset} --preset {opts.preset} "
        f"{'--pretrained' if opts.pretrained else '--no-pretrained'}`; device(s): {', '.join(devices)}. "
        f"Per-seed rows: `{opts.csv}`. Reproduce: `python experiments/teacher_study.py --seeds "
        f"{opts.seeds}{' --epochs ' + str(opts.epochs) if opts.epochs else ''}`.",
    ]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--data-root")
    parser.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                        help="ImageNet weights [default: no for the demo preset, yes otherwise]")  # fmt: skip
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--results", default="results-study")
    parser.add_argument("--output", default="docs/teacher-study/table.md")
    parser.add_argument("--csv", default="docs/teacher-study/runs.csv")
    parser.add_argument("--only", help="Comma-separated experiment names.")
    parser.add_argument("--epochs", type=int, help="Override the preset's epochs (for a quick check).")
    parser.add_argument("--table-only", action="store_true", help="Only rebuild the CSV and table.")
    parser.add_argument("--deadline", type=float, help="Seconds after which no run starts or continues.")
    opts = parser.parse_args()
    if opts.pretrained is None:
        opts.pretrained = opts.preset != "demo"
    return opts


def run_all(opts: argparse.Namespace, results: Path) -> None:
    chosen = [e for e in EXPERIMENTS if not opts.only or e[0] in opts.only.split(",")]
    logs = results / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    subprocess.run(  # the dataset is made (or checked) once, before the runs start side by side
        [sys.executable, "-c", "import sys, vpr_bench; vpr_bench.load_all(); from vpr_bench.config import "
         "resolve; from vpr_bench.datasets import load_split; load_split(resolve(sys.argv[1], "
         "{'data.dataset': sys.argv[2], 'data.data_root': sys.argv[3] or None}).data, 'test')",
         opts.preset, opts.dataset, opts.data_root or ""], check=True)  # fmt: skip
    deadline = time.monotonic() + (opts.deadline or float("inf"))
    seeds = [int(s) for s in opts.seeds.split(",")]
    jobs = [(name, f"{name}-seed{seed}", command(cmd, seed, results / name, opts))
            for name, _, cmd in chosen for seed in seeds]  # fmt: skip
    global SLOTS
    SLOTS = threading.Semaphore(opts.jobs)
    with ThreadPoolExecutor(len(jobs) * (1 + len(STUDENTS))) as pool:
        futures = [
            pool.submit(pipeline_job, job, cmd, results / name, logs, deadline, pool)
            if name.startswith("tscm")
            else pool.submit(run_job, job, cmd, logs, deadline)
            for name, job, cmd in jobs
        ]
        codes = [f.result() for f in futures]
    failed = [job for (_, job, _), code in zip(jobs, codes, strict=True) if code]
    if failed:
        print(f"failed or not run: {', '.join(failed)}", file=sys.stderr)


def main() -> None:
    opts = parse_args()
    results = Path(opts.results)
    if not opts.table_only:
        run_all(opts, results)
    rows = run_rows(results)
    write_csv(rows, Path(opts.csv))
    text = table(rows, opts)
    Path(opts.output).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
