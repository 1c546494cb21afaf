"""A database smaller than Recall@N's largest N: k is capped, nothing padded, the record says so."""

import warnings

import numpy as np
import pytest
import torch

from vpr_bench.datasets.ground_truth import GroundTruth
from vpr_bench.datasets.split import Split
from vpr_bench.evaluation.engine import evaluate
from vpr_bench.methods import build_method
from vpr_bench.results.predictions import write_predictions
from vpr_bench.testing import tiny_config, write_image


def small_split(root, positives, groups=None, num_database=3):
    database = [root / f"db{i}.jpg" for i in range(num_database)]
    queries = [root / f"q{i}.jpg" for i in range(len(positives))]
    for i, path in enumerate(database + queries):
        write_image(path, colour=(i * 40 % 255, 90, 200 - i * 20))
    gt = GroundTruth.from_lists(positives, num_database)
    return Split("small", "test", database, queries, explicit_ground_truth=gt, database_groups=groups)


@pytest.mark.parametrize("grouped", [False, True])
def test_three_places_with_recall_at_1_5_10(tmp_path, grouped):
    if grouped:  # 3 places of 2 cut-outs each (Tokyo 24/7's panoramas): k capped at the places
        split = small_split(tmp_path, [[0, 1], [4, 5], [], [2, 3]], np.repeat(np.arange(3), 2), 6)
    else:
        split = small_split(tmp_path, [[0], [2], [], [1]])
    cfg = tiny_config(**{"eval.recall_at": (1, 5, 10)})
    model = build_method(cfg.model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(model, split, cfg, torch.device("cpu"), run_dir=tmp_path, count_flops=False)
        write_predictions(tmp_path, result.predictions)
    assert not [w for w in caught if "overflow" in str(w.message)]  # distances saved cleanly
    saved = np.load(tmp_path / "predictions.npz")
    assert saved["predictions"].shape == (4, 3) and (saved["predictions"] >= 0).all()
    assert np.isfinite(saved["distances"]).all()
    if grouped:  # one image per place in each row
        assert (np.sort(split.database_groups[saved["predictions"]], axis=1) == np.arange(3)).all()
    else:
        assert (np.sort(saved["predictions"], axis=1) == np.arange(3)).all()
    metrics, protocol = result.metrics, result.protocol
    assert metrics["R@5"] == metrics["R@10"] == 75.0  # every query with a positive, whatever the model
    assert metrics["R@1"] <= 75.0 and len(result.recall_curve) == 3
    assert protocol["predictions_per_query"] == 3 and protocol["k_capped_at_database"] is True


def test_k_not_capped_when_the_database_is_large_enough(tmp_path):
    split = small_split(tmp_path, [[0], [2]], num_database=12)
    cfg = tiny_config(**{"eval.recall_at": (1, 5, 10)})
    result = evaluate(build_method(cfg.model), split, cfg, torch.device("cpu"), count_flops=False)
    assert result.protocol["predictions_per_query"] == 10
    assert result.protocol["k_capped_at_database"] is False
