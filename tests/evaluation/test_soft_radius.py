"""``--soft-radius``: soft positives (VPR_Tutorial's GTsoft) that the precision-recall metrics do not count
false; recorded in the protocol, refused in one line where it cannot apply."""

import json

import numpy as np
import pytest

from vpr_bench.config import DataConfig
from vpr_bench.datasets import build_dataset
from vpr_bench.testing import TINY_CLI, run_cli


def test_soft_radius_ignores_soft_top1_matches(synthetic_root, tmp_path, capsys):
    dataset = f"folder:{synthetic_root}"
    args = ["eval", "--method", "gem", "--dataset", dataset, "--metrics", "pr", "--out", str(tmp_path)]
    code, _, err = run_cli([*args, "--soft-radius", "60", *TINY_CLI], capsys)
    assert code == 0, err
    (metrics,) = tmp_path.glob("*/gem/*/metrics.json")
    record = json.loads(metrics.read_text())
    assert record["protocol"]["soft_pos_radius"] == 60.0
    assert json.loads((metrics.parent / "config.json").read_text())["eval"]["soft_radius"] == 60.0
    # independently: a top-1 within 60 m but not 25 m is neither a true nor a false positive
    with np.load(metrics.parent / "predictions.npz") as saved:
        top1, nearest = saved["predictions"][:, 0], saved["distances"][:, 0].astype(np.float64)
    split = build_dataset(dataset, DataConfig(dataset=dataset)).split("test")
    metres = np.linalg.norm(split.database_utm[top1] - split.query_utm, axis=1)
    hard = np.array([len(split.ground_truth(25.0).positives(q)) > 0 for q in range(split.num_queries)])
    correct, counted = metres <= 25.0, (metres <= 25.0) | (metres > 60.0)
    assert (~counted).any(), "the case must have a soft-only top-1 to ignore"
    precision, recall = [1.0], [0.0]
    for threshold in sorted(set(nearest[counted].tolist())):
        accepted = counted & (nearest <= threshold)
        precision.append((correct & accepted).sum() / accepted.sum())
        recall.append((correct & accepted).sum() / hard.sum())
    auc = sum(
        (recall[i + 1] - recall[i]) * (precision[i + 1] + precision[i]) / 2 for i in range(len(recall) - 1)
    )
    assert record["metrics"]["AUC-PR"] == pytest.approx(auc)  # fmt: skip


@pytest.mark.parametrize(
    "dataset, radius, message",
    [
        ("synthetic", "10", "error: --soft-radius 10 must be ≥ the positive radius 25"),
        ("corridor", "50", "error: --soft-radius 50: corridor has ground-truth lists, not coordinates"),
        ("corridor", "-1", "error: --soft-radius must be > 0"),
    ],
)
def test_soft_radius_refused_in_one_line(synthetic_root, tmp_path, capsys, dataset, radius, message):
    dataset = f"folder:{synthetic_root}" if dataset == "synthetic" else dataset
    args = ["eval", "--method", "gem", "--dataset", dataset, "--soft-radius", radius, "--out", str(tmp_path)]
    code, _, err = run_cli([*args, *TINY_CLI], capsys)
    assert code != 0 and err.startswith(message) and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # refused before a run folder is made
