"""Why is the TSCM teacher weak on the demo? One variable at a time, equal budget, seed means.

Every experiment trains on the embedded ``synthetic`` dataset with the ``demo`` preset (48×64 images,
from scratch, the same epochs, queries per epoch, batch and negatives for every method) once per seed,
into its own results folder, then writes a Markdown table of seed means (mean ± sample std) with the
command of each row. Runs go ``--jobs`` at a time (each a ``vpr-bench`` process); the ms/image of runs
that share a machine are not costs, so the table gives parameters and GFLOPs instead.

    python experiments/teacher_study.py [--seeds 1,2,3] [--jobs 2] [--device auto]
        [--results results-study] [--output docs/teacher-study-table.md] [--only NAME,...] [--epochs N]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# the release's raw concatenation of the descriptor parts (the demo preset balances them since this study)
RAW = ["--model-option", "balance_parts=false"]
# name, question, arguments (after `vpr-bench run --dataset synthetic --preset demo`)
EXPERIMENTS = [
    ("tscm", "the paper's pipeline: the teacher, then its cross-metric and no-distillation students",
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
     ["run", "--method", "tscm-teacher", "--model-option", "balance_parts=true"]),
    ("teacher-balanced-no-gem", "the three NetVLADLoupe heads alone, balanced",
     ["run", "--method", "tscm-teacher", "--model-option", "parts=resnet_vlad,fused_vlad,vit_vlad",
      "--model-option", "balance_parts=true"]),
]  # fmt: skip


def command(args: list[str], seed: int, out: Path, device: str, epochs: int | None) -> list[str]:
    extra = ["--epochs", str(epochs), "--patience", str(epochs)] if epochs else []
    return [
        sys.executable, "-m", "vpr_bench", *args[:1], "--dataset", "synthetic", "--preset", "demo",
        "--seed", str(seed), "--device", device, "--quiet", "--out", str(out), *args[1:], *extra,
    ]  # fmt: skip


STUDENTS = ("cross-metric", "none")  # the students of each "tscm" teacher, side by side once it is done


SLOTS = threading.Semaphore(1)  # runs at a time (--jobs)


def run_job(name: str, cmd: list[str], log_dir: Path, deadline: float) -> int:
    """Run one command when a slot is free (killed at ``deadline``, a ``time.monotonic()``); its exit
    code (-1: skipped or killed at the deadline)."""
    with SLOTS:
        return _run(name, cmd, log_dir, deadline)


def _run(name: str, cmd: list[str], log_dir: Path, deadline: float) -> int:
    if time.monotonic() >= deadline:
        print(f"{name}: skipped (deadline)", flush=True)
        return -1
    started = time.perf_counter()
    log = log_dir / f"{name}.log"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    with open(log, "w") as handle:
        process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
        try:
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = -1
    seconds = time.perf_counter() - started
    print(f"{name}: exit {code} after {seconds:.0f} s ({log})", flush=True)
    return code


def pipeline_job(name, cmd, out: Path, log_dir: Path, deadline: float, pool) -> int:
    """The teacher, then its students side by side (each distilled from this seed's teacher, with the
    teacher's model options)."""
    code = run_job(name, cmd, log_dir, deadline)
    teachers = sorted((out / "synthetic" / "tscm-teacher").glob("*/metrics.json"), key=os.path.getmtime)
    seed = cmd[cmd.index("--seed") + 1]
    mine = [p.parent for p in teachers if f'"seed": {seed},' in p.read_text()]
    if code or not mine:
        return code or 1
    student = [*cmd[: cmd.index("--method")], "--method", "tscm-student", "--teacher", str(mine[-1])]
    jobs = [
        pool.submit(run_job, f"{name}-{kd}", [*student, "--kd-loss", kd, *cmd[cmd.index("--method") + 2 :]],
                    log_dir, deadline)
        for kd in STUDENTS
    ]  # fmt: skip
    return max(job.result() for job in jobs)


def table(results: Path, seeds: list[int], epochs: int | None) -> str:
    from vpr_bench import load_all
    from vpr_bench.results import load_records
    from vpr_bench.results.table import MeanStd, seed_means

    load_all()
    lines = [
        "| experiment | method (KD loss) | question | seeds | R@1 | R@5 | R@10 | params (M) | GFLOPs |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    budget = None
    for name, question, _ in EXPERIMENTS:
        folder = results / name
        records = load_records(folder) if folder.is_dir() else []
        for merged in sorted(seed_means(records), key=lambda r: str(r.get("method"))):
            budget = budget or merged.get("budget")

            def cell(field, fmt="{:.1f}", record=merged):
                value = record.get(field)
                if isinstance(value, MeanStd):
                    return f"{fmt.format(float(value))} ± {fmt.format(value.std)}"
                return "—" if value is None else fmt.format(value)

            kd = merged.get("distillation.kd_loss")
            method = f"{merged.get('method')}" + (f" ({kd})" if kd else "")
            params = merged.get("cost.params")
            lines.append(
                f"| {name} | {method} | {question} | {','.join(map(str, merged.get('seeds') or []))} | "
                f"{cell('metrics.R@1')} | {cell('metrics.R@5')} | {cell('metrics.R@10')} | "
                f"{float(params) / 1e6:.2f} | {cell('cost.gflops_per_image', '{:.2f}')} |"
            )
    cmd = ["python", "experiments/teacher_study.py", "--seeds", ",".join(map(str, seeds))]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    notes = [
        "",
        f"Reproduce: `{shlex.join(cmd)}` (each row's command: `vpr-bench <args> --dataset synthetic "
        "--preset demo --seed S`, arguments in `experiments/teacher_study.py`).",
    ]
    if budget:
        notes.append(
            f"Budget of every run: {budget.get('max_epochs')} epochs of {budget.get('queries_per_epoch')} "
            f"queries, batch {budget.get('batch_size')}, images {budget.get('image_size')}, "
            f"pretrained {budget.get('pretrained')}, device {budget.get('device')}."
        )
    return "\n".join(lines + notes) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--results", default="results-study")
    parser.add_argument("--output", default="docs/teacher-study-table.md")
    parser.add_argument("--only", help="Comma-separated experiment names.")
    parser.add_argument("--epochs", type=int, help="Override the demo's epochs (for a quick check).")
    parser.add_argument("--table-only", action="store_true", help="Only rebuild the table.")
    parser.add_argument("--deadline", type=float, help="Seconds after which no run starts or continues.")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = Path(args.results)
    chosen = [e for e in EXPERIMENTS if not args.only or e[0] in args.only.split(",")]
    if not args.table_only:
        logs = results / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        # the dataset is generated once, before the runs start side by side
        from vpr_bench import load_all
        from vpr_bench.config import resolve
        from vpr_bench.datasets import load_split

        load_all()
        load_split(resolve("demo", {}).data, "test")
        deadline = time.monotonic() + (args.deadline or float("inf"))
        jobs = [  # the pipeline's teachers first: their students come after them
            (name, f"{name}-seed{seed}", command(cmd, seed, results / name, args.device, args.epochs))
            for name, _, cmd in chosen
            for seed in seeds
        ]
        global SLOTS
        SLOTS = threading.Semaphore(args.jobs)
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
    text = table(results, seeds, args.epochs)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
