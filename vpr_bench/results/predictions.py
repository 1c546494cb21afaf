"""A run's top-k predictions on disk: ``predictions.npz`` in its run folder and, for a split without
ground truth (``--no-labels``), the ranking as image paths (``predictions.tsv``) and, for MSLS's test
cities, the challenge's submission file (``msls_submission.csv``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from vpr_bench._io import atomic_write_bytes, atomic_write_text
from vpr_bench.datasets import Split
from vpr_bench.evaluation.matching import Predictions

FILE = "predictions.npz"
RANKED = "predictions.tsv"
# the submission files of benchmarks scored elsewhere: the split's ``info["submission"]`` → file name
SUBMISSIONS = {"msls": "msls_submission.csv"}


def write_predictions(run_dir: Path, predictions: Predictions) -> Path:
    """``predictions.npz`` in ``run_dir`` (written atomically): ``query_index`` (Q,) the split's query rows
    evaluated, ``predictions`` (Q, K) their ranked database rows (-1: none), ``distances`` (Q, K) float32, as
    scored (records before the precision-recall metrics kept float16), so that ``vpr-bench metrics``
    recomputes every metric exactly."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        query_index=predictions.query_index.astype(np.int32),
        predictions=predictions.indices.astype(np.int32),
        distances=predictions.distances.astype(np.float32),
    )
    path = Path(run_dir) / FILE
    atomic_write_bytes(path, buffer.getvalue())
    return path


def write_ranking(run_dir: Path, split: Split, predictions: Predictions, no_labels: bool) -> list[Path]:
    """``predictions.npz``; with ``no_labels`` also ``predictions.tsv`` and the split's submission file
    where its benchmark is scored elsewhere (``SUBMISSIONS``). The paths written."""
    written = [write_predictions(run_dir, predictions)]
    if no_labels:
        written.append(write_ranked_paths(run_dir, split, predictions))
        if split.info.get("submission") == "msls":
            written.append(write_msls_submission(run_dir, split, predictions))
    return written


def _ranked(split: Split, predictions: Predictions, name) -> list[list[str]]:
    """Per evaluated query, ``name`` of its image then of its ranked database images, best first."""
    return [
        [name(split.query_paths[q]), *(name(split.database_paths[i]) for i in row if i >= 0)]
        for q, row in zip(predictions.query_index.tolist(), predictions.indices.tolist(), strict=True)
    ]


def write_ranked_paths(run_dir: Path, split: Split, predictions: Predictions) -> Path:
    """``predictions.tsv``: one line per query, its image path then the ranked database image paths,
    tab-separated (the paths as the split reads them)."""
    path = Path(run_dir) / RANKED
    atomic_write_text(path, "".join("\t".join(row) + "\n" for row in _ranked(split, predictions, str)))
    return path


def write_msls_submission(run_dir: Path, split: Split, predictions: Predictions) -> Path:
    """MSLS's challenge submission in the format its ``evaluate.py`` reads (mapillary/mapillary_sls,
    ``np.loadtxt(prediction, ndmin=2, dtype=str)``): one line per query, the query's key followed by the
    keys of its ranked database images, separated by single spaces; a key is the image's file name
    without ``.jpg``; every line as long (the top ``max(--recall-at)``, 20 by default, for R@20)."""
    path = Path(run_dir) / SUBMISSIONS["msls"]
    rows = _ranked(split, predictions, lambda p: Path(p).stem)
    atomic_write_text(path, "".join(" ".join(row) + "\n" for row in rows))
    return path
