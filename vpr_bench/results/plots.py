"""Figures from run records (matplotlib, headless Agg): Recall@N and precision-recall curves, retrieval
grids, cost/accuracy.

Each function writes a figure of ``size`` pixels (width, height) at 100 dpi — PNG, PDF or SVG, as the
output's extension says — and returns its path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display is needed or used
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vpr_bench.errors import VPRBenchError  # noqa: E402
from vpr_bench.results.store import Record  # noqa: E402

DPI = 100
FORMATS = ("png", "pdf", "svg")  # what --output's extension may ask for


def label(record: Record) -> str:
    kd = record.get("distillation.kd_loss")
    name = f"{record.get('method')} ({kd})" if kd else str(record.get("method"))
    if record.get("trained") is False:
        name += ", untrained"
    return f"{name} · {record.run_id[-6:]}"


def _figure(size: tuple[int, int], **kwargs):
    return plt.subplots(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, **kwargs)


def figure_format(output: str | Path) -> str:
    """The format ``output``'s extension names (png, pdf or svg); a ``VPRBenchError`` naming the file for
    any other, so that a typo such as ``.pgn`` never gets PNG bytes under its name."""
    suffix = Path(output).suffix.lower()
    if suffix.lstrip(".") in FORMATS:
        return suffix.lstrip(".")
    known = ", ".join(f".{f}" for f in FORMATS)
    what = f"unknown figure format {suffix!r}" if suffix else "no extension"
    raise VPRBenchError(f"--output {output}: {what}; end the file name in {known}")


def _save(fig, output: str | Path) -> Path:
    import io

    from vpr_bench._io import atomic_write_bytes

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=figure_format(output), dpi=DPI)
    finally:
        plt.close(fig)
    atomic_write_bytes(output, buffer.getvalue())
    return Path(output)


def recall_curves(records: Sequence[Record], output: str | Path, size=(800, 600)) -> Path:
    """Recall@N against N, one labelled line per run (the record's full curve, else its R@N points)."""
    if not records:
        raise VPRBenchError("plot recall: no runs to plot")
    fig, ax = _figure(size, layout="constrained")
    for record in records:
        curve = record.get("recall_curve")
        if curve:
            ns, values = np.arange(1, len(curve) + 1), np.asarray(curve)
        else:  # an older record: only the R@N it was asked for
            points = sorted(
                (int(k[2:]), v) for k, v in (record.get("metrics") or {}).items() if k.startswith("R@")
            )
            ns, values = np.array([n for n, _ in points]), np.array([v for _, v in points])
        ax.plot(ns, values, marker="o" if len(ns) < 8 else None, markersize=4, label=label(record))
    datasets = sorted({str(r.get("dataset")) for r in records})
    ax.set(xlabel="N", ylabel="Recall@N (%)", ylim=(0, 100), title=f"Recall@N on {', '.join(datasets)}")
    ax.set_xscale("log")
    ax.set_xticks([1, 2, 5, 10, 20], labels=["1", "2", "5", "10", "20"])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, output)


def pr_curves(records: Sequence[Record], output: str | Path, size=(800, 600)) -> Path:
    """Precision against recall of each run's top-1 matches over a distance threshold (the record's
    ``curves.pr``, ``evaluation/pr.py``), one labelled line per run with its AUC-PR."""
    usable = [r for r in records if r.get("curves", {}).get("pr")]
    if not usable:
        names = ", ".join(r.run_id for r in records)
        raise VPRBenchError(
            f"plot pr: no precision-recall curve in {names}: evaluate with --metrics pr (or all), or add "
            "it to a finished run with `vpr-bench metrics RUN --metrics pr`"
        )
    fig, ax = _figure(size, layout="constrained")
    for record in usable:
        curve = record.get("curves")["pr"]
        auc = (record.get("metrics") or {}).get("AUC-PR")
        name = label(record) + ("" if auc is None else f" (AUC {auc:.3f})")
        ax.plot(curve["recall"], curve["precision"], marker="o" if len(curve["recall"]) < 30 else None,
                markersize=3, label=name)  # fmt: skip
    datasets = sorted({str(r.get("dataset")) for r in usable})
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"Precision-recall of the top-1 match on {', '.join(datasets)}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, output)


def cost_accuracy(records: Sequence[Record], output: str | Path, size=(800, 600)) -> Path:
    """R@1 against ms/image; bubble area ∝ parameters (the TSCM paper's trade-off picture)."""
    usable = [r for r in records if r.get("metrics.R@1") is not None and r.get("cost.ms_per_image")]
    if not usable:
        raise VPRBenchError("plot cost: no run has both R@1 and ms/image")
    fig, ax = _figure(size, layout="constrained")
    params = np.array([(r.get("cost.params") or 0) / 1e6 for r in usable])
    area = 40 + 600 * params / max(params.max(), 1e-9)
    for record, s in zip(usable, area, strict=True):
        x, y = record.get("cost.ms_per_image"), record.get("metrics.R@1")
        ax.scatter(x, y, s=s, alpha=0.5)
        params_m = (record.get("cost.params") or 0) / 1e6
        ax.annotate(
            f"{label(record)}\n{params_m:.1f} M",
            (x, y),
            xytext=(0, 12),
            textcoords="offset points",
            fontsize=7,
            ha="center",
            va="bottom",
        )
    datasets = sorted({str(r.get("dataset")) for r in usable})
    ax.set(xlabel="ms / image", ylabel="Recall@1 (%)", title=f"Accuracy vs cost on {', '.join(datasets)}")
    ax.margins(0.2)
    ax.grid(True, alpha=0.3)
    return _save(fig, output)


def _thumbnail(path: str, height: int = 96) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        width = max(1, round(image.width * height / image.height))
        return np.asarray(image.resize((width, height)))


def choose_queries(top1_correct: np.ndarray, count: int, failures: bool, seed: int) -> np.ndarray:
    """``count`` query rows in a seeded random order; with ``failures`` those whose top-1 is wrong first."""
    order = np.random.default_rng(seed).permutation(len(top1_correct))
    if failures:
        order = np.concatenate([order[~top1_correct[order]], order[top1_correct[order]]])
    return order[:count]


def retrieval_grid(
    run_dir: str | Path,
    output: str | Path,
    queries: int = 8,
    top: int = 5,
    failures: bool = False,
    seed: int = 0,
    size: tuple[int, int] | None = None,
) -> Path:
    """Each row a query and its top-``top`` database images: green border = correct, red = wrong."""
    from vpr_bench.config import RunConfig
    from vpr_bench.datasets import load_split
    from vpr_bench.evaluation.metrics import hits

    run_dir = Path(run_dir)
    try:
        record = json.loads((run_dir / "metrics.json").read_text())
        cfg = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        saved = np.load(run_dir / "predictions.npz")
        query_index, predictions, distances = saved["query_index"], saved["predictions"], saved["distances"]
    except (OSError, ValueError, KeyError) as exc:
        raise VPRBenchError(f"plot retrievals: {run_dir} is not a finished run folder ({exc})") from None
    split_name = (record.get("protocol") or {}).get("split", cfg.eval.split)
    _, split = load_split(cfg.data, split_name)
    gt = split.ground_truth(cfg.data.pos_radius).subset(query_index)
    top = min(top, predictions.shape[1])
    correct = hits(predictions[:, :top], gt)  # (Q, top)
    rows = choose_queries(correct[:, 0], queries, failures, seed)
    size = size or (150 * (top + 1), 130 * len(rows) + 40)
    fig, axes = _figure(size, nrows=len(rows), ncols=top + 1, squeeze=False, layout="constrained")
    for r, q in enumerate(rows):
        cells = [(split.query_paths[query_index[q]], None, f"query {query_index[q]}")]
        for k in range(top):
            db = predictions[q, k]
            ok = bool(correct[q, k])
            cells.append(
                (split.database_paths[db] if db >= 0 else None, ok, f"#{k + 1} d²={distances[q, k]:.2f}")
            )
        for ax, (path, ok, title) in zip(axes[r], cells, strict=True):
            if path is not None:
                ax.imshow(_thumbnail(str(path)))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=7)
            colour = "black" if ok is None else ("tab:green" if ok else "tab:red")
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(1 if ok is None else 4)
    fig.suptitle(f"{label(Record(run_dir, record))} on {record.get('dataset')}/{split_name}", fontsize=9)
    return _save(fig, output)


def _number(text: str):
    """A CSV cell as int, float or None (empty)."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def training_history(run_dir: str | Path) -> tuple[Record, list[dict]]:
    """A run (finished or still training) and its per-epoch rows: its ``training.csv``, else (a run
    made before that file existed) its record's ``training.history``."""
    import csv

    run_dir = Path(run_dir)
    try:
        record = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):  # still training, or interrupted: name it from its config.json
        try:
            config = json.loads((run_dir / "config.json").read_text())
        except (OSError, ValueError):
            raise VPRBenchError(
                f"plot training: {run_dir} is not a run folder (no readable config.json)"
            ) from None
        distill = config.get("distill") or {}
        record = {
            "method": (config.get("model") or {}).get("method"),
            "run_id": run_dir.name,
            "distillation": {"kd_loss": distill.get("kd_loss")} if distill.get("teacher") else {},
        }
    csv_file = run_dir / "training.csv"
    if csv_file.is_file():
        with csv_file.open(newline="") as f:
            rows = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]
    else:
        rows = (record.get("training") or {}).get("history") or []
    if not rows:
        raise VPRBenchError(
            f"plot training: {run_dir} has no training history (no training.csv, no training.history in "
            "its record: an eval-only run, or one that has not finished an epoch yet)"
        )
    return Record(run_dir, record), rows


def training_curves(run_dirs: Sequence[str | Path], output: str | Path, size=(800, 600)) -> Path:
    """Training loss and validation R@1 per epoch, one labelled line per run, in two panels."""
    if not run_dirs:
        raise VPRBenchError("plot training: no runs to plot")
    runs = [training_history(run_dir) for run_dir in run_dirs]
    fig, (loss_ax, recall_ax) = _figure(size, ncols=2, layout="constrained")
    for record, rows in runs:
        epochs = [row["epoch"] for row in rows]
        marker = "o" if len(rows) < 30 else None
        name = label(record) + ("" if "metrics" in record.data else " (unfinished)")
        loss_ax.plot(epochs, [row.get("loss") for row in rows], marker=marker, markersize=3, label=name)
        recall_ax.plot(epochs, [row.get("val_R@1") for row in rows], marker=marker, markersize=3, label=name)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    recall_ax.set(xlabel="epoch", ylabel="Recall@1 (%)", title="Validation R@1")
    for ax in (loss_ax, recall_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
    recall_ax.legend(fontsize=8, loc="best")
    return _save(fig, output)
