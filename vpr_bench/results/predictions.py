"""A run's top-k predictions on disk: ``predictions.npz`` in its run folder."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from vpr_bench._io import atomic_write_bytes
from vpr_bench.evaluation.matching import Predictions

FILE = "predictions.npz"


def write_predictions(run_dir: Path, predictions: Predictions) -> Path:
    """``predictions.npz`` in ``run_dir`` (written atomically): ``query_index`` (Q,) the split's query rows
    evaluated, ``predictions`` (Q, K) their ranked database rows (-1: none), ``distances`` (Q, K) float16."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        query_index=predictions.query_index.astype(np.int32),
        predictions=predictions.indices.astype(np.int32),
        distances=predictions.distances.astype(np.float16),
    )
    path = Path(run_dir) / FILE
    atomic_write_bytes(path, buffer.getvalue())
    return path
