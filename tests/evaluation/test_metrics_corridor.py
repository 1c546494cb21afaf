"""Acceptance: ``vpr-bench eval --metrics all`` on the real Corridor writes every built-in metric, each
equal to an independent computation from the run's own predictions.npz and the split's ground truth;
``vpr-bench metrics RUN`` adds the new metrics to an old-style record atomically; ``plot pr`` draws it;
``compare --metric`` ranks by any of them."""

import json
import shutil

import numpy as np
import pytest

from vpr_bench.datasets import build_dataset
from vpr_bench.testing import TINY_CLI, run_cli

NEW = ("mAP@1", "mAP@5", "mAP@10", "mAP@20", "AUC-PR", "R@100P", "EP", "MRR@20")


@pytest.fixture(scope="module")
def corridor_run(tmp_path_factory):
    """One untrained gem evaluation of Corridor with every metric, shared by the tests here."""
    from vpr_bench.testing import cli_main

    out = tmp_path_factory.mktemp("results")
    args = ["eval", "--method", "gem", "--dataset", "corridor", "--untrained", "--metrics", "all"]
    try:
        cli_main([*args, "--out", str(out), *TINY_CLI])
    except SystemExit as exc:
        assert exc.code in (0, None)
    (record,) = out.glob("corridor/gem/*/metrics.json")
    return record.parent


def independent_metrics(indices, distances, positives, ks=(1, 5, 10, 20)) -> dict:
    """Every metric written out query by query, from its definition (not from vpr_bench's code)."""
    sets = [set(p.tolist()) for p in positives]
    queries, with_positive = range(len(indices)), [q for q in range(len(indices)) if sets[q]]
    out = {
        f"R@{k}": 100.0 * np.mean([bool(set(indices[q, :k].tolist()) & sets[q]) for q in queries]) for k in ks
    }
    first = [
        next((i + 1 for i, d in enumerate(indices[q, :20]) if d in sets[q]), None) for q in with_positive
    ]
    out["MRR@20"] = np.mean([0.0 if r is None else 1.0 / r for r in first])
    for k in ks:  # mapillary_sls's apk: hits so far / rank at each hit, over min(|P|, k)
        aps = []
        for q in with_positive:
            found, total = 0, 0.0
            for i, d in enumerate(indices[q, :k]):
                if d in sets[q]:
                    found += 1
                    total += found / (i + 1)
            aps.append(total / min(len(sets[q]), k))
        out[f"mAP@{k}"] = np.mean(aps)
    top, nearest = indices[:, 0], distances[:, 0].astype(np.float64)
    correct = np.array([top[q] in sets[q] for q in queries])
    precision, recall = [1.0], [0.0]  # VPR_Tutorial's createPR(matching="single"), at every threshold
    for threshold in sorted(set(nearest.tolist())):
        accepted = nearest <= threshold
        tp, fp = int((correct & accepted).sum()), int((~correct & accepted).sum())
        precision.append(tp / (tp + fp))
        recall.append(tp / len(with_positive))
    out["AUC-PR"] = sum(
        (recall[i + 1] - recall[i]) * (precision[i + 1] + precision[i]) / 2 for i in range(len(recall) - 1)
    )
    out["R@100P"] = 100.0 * max(r for p, r in zip(precision, recall, strict=True) if p == 1.0)
    sklearn = pytest.importorskip("sklearn.metrics")  # VPR-Bench's own route to its curve
    p, r, _ = sklearn.precision_recall_curve(correct.astype(int), -nearest)
    p_r0 = p[-2]
    r_p100 = 0.0 if p_r0 < 1 else r[np.flatnonzero(p == 1).min()]
    out["EP"] = (p_r0 + r_p100) / 2
    return out  # fmt: skip


def saved(run_dir):
    with np.load(run_dir / "predictions.npz") as npz:
        return npz["query_index"], npz["predictions"], npz["distances"]


def ground_truth(query_index):
    gt = build_dataset("corridor").split("test").ground_truth()
    return [gt.positives(int(q)) for q in query_index]


def test_every_metric_equals_an_independent_computation(corridor_run):
    record = json.loads((corridor_run / "metrics.json").read_text())
    query_index, indices, distances = saved(corridor_run)
    assert distances.dtype == np.float32  # as scored: recomputation is exact
    expected = independent_metrics(indices, distances, ground_truth(query_index))
    assert set(record["metrics"]) == set(expected)
    assert record["metrics"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    curve = record["curves"]["pr"]
    assert curve["precision"][0] == 1.0 and curve["recall"][-1] == pytest.approx(
        record["metrics"]["R@1"] / 100, abs=1e-4
    )  # the record keeps the curve to 4 decimals
    assert record["protocol"]["soft_pos_radius"] is None and record["metrics_by_condition"] == {}


def test_plot_pr_draws_a_png(corridor_run, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "pr.png"
    results = corridor_run.parents[2]
    code, _, err = run_cli(["plot", "pr", str(corridor_run), "--results", str(results), "--output", str(out),
                            "--size", "640x480"], capsys)  # fmt: skip
    assert code == 0, err
    with Image.open(out) as image:
        assert (image.format, image.size) == ("PNG", (640, 480))


def old_style_copy(run_dir, tmp_path):
    """A copy of the run as a record from before the new metrics: MRR instead of MRR@20, no mAP, PR,
    EP, curves or per-condition section."""
    copy = tmp_path / "results" / "corridor" / "gem" / run_dir.name
    shutil.copytree(run_dir, copy)
    record = json.loads((copy / "metrics.json").read_text())
    record["metrics"] = {k: v for k, v in record["metrics"].items() if k not in NEW}
    record["metrics"]["MRR"] = 0.5
    for section in ("curves", "metrics_by_condition"):
        record.pop(section)
    (copy / "metrics.json").write_text(json.dumps(record))
    return copy, record


def test_metrics_command_adds_the_new_metrics_to_an_old_record(corridor_run, tmp_path, capsys):
    copy, old = old_style_copy(corridor_run, tmp_path)
    code, out, err = run_cli(["metrics", str(copy)], capsys)
    assert code == 0, err
    assert "added " in out and "AUC-PR" in out and "unchanged 4" in out  # R@1/5/10/20 recomputed equal
    record = json.loads((copy / "metrics.json").read_text())
    first = json.loads((corridor_run / "metrics.json").read_text())
    assert record["metrics"] == pytest.approx({**first["metrics"], "MRR": 0.5})  # the old MRR is kept
    assert record["curves"]["pr"] == first["curves"]["pr"]
    assert record["metrics_recomputed"][0]["metrics"] == ["all"]
    added = {"curves", "metrics_by_condition", "metrics_recomputed"}
    assert set(record) == set(old) | added  # and nothing else changed but metrics and protocol:
    assert all(record[k] == old[k] for k in old if k not in ("metrics", "protocol"))
    assert list(copy.glob(".*.tmp")) == []


def test_metrics_command_writes_atomically(corridor_run, tmp_path, capsys, monkeypatch):
    import os

    copy, _ = old_style_copy(corridor_run, tmp_path)
    before = (copy / "metrics.json").read_bytes()

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    code, _, err = run_cli(["metrics", copy.name, "--results", str(tmp_path / "results")], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "previous version is kept" in err
    assert (copy / "metrics.json").read_bytes() == before and list(copy.glob(".*.tmp")) == []


def test_metrics_command_on_float16_distances_and_unknown_names(corridor_run, tmp_path, capsys):
    copy, _ = old_style_copy(corridor_run, tmp_path)
    query_index, indices, distances = saved(copy)
    np.savez_compressed(copy / "predictions.npz", query_index=query_index, predictions=indices,
                        distances=distances.astype(np.float16))  # fmt: skip
    code, _, err = run_cli(["metrics", str(copy), "--metrics", "pr,ep"], capsys)
    assert code == 0, err
    record = json.loads((copy / "metrics.json").read_text())
    expected = independent_metrics(indices, distances.astype(np.float16), ground_truth(query_index))
    assert record["metrics"]["AUC-PR"] == pytest.approx(expected["AUC-PR"])
    assert "mAP@5" not in record["metrics"] and record["metrics_recomputed"][-1]["distances"] == "float16"
    code, _, err = run_cli(["metrics", str(copy), "--metrics", "nope"], capsys)
    assert code != 0 and err.startswith("error: --metrics: unknown metric 'nope'; valid: ep, map, mrr, pr")
    assert len(err.strip().splitlines()) == 1


def test_compare_ranks_by_any_metric(corridor_run, tmp_path, capsys):
    copy, _ = old_style_copy(corridor_run, tmp_path)
    run_cli(["metrics", str(copy)], capsys)
    record = json.loads((copy / "metrics.json").read_text())
    record["metrics"]["AUC-PR"], record["metrics"]["R@1"], record["method"] = 0.9, 1.0, "netvlad"
    (copy / "metrics.json").write_text(json.dumps(record))
    shutil.move(copy, copy.parents[1] / "netvlad" / copy.name)  # and the original beside it:
    shutil.copytree(corridor_run, copy)
    results = str(tmp_path / "results")
    code, out, err = run_cli(
        ["compare", "--results", results, "--metric", "auc_pr", "--format", "csv"], capsys
    )
    assert code == 0, err
    lines = out.splitlines()
    assert "AUC-PR" in lines[0].split(",") and lines[1].startswith("netvlad") and lines[2].startswith("gem")
    code, out, _ = run_cli(["compare", "--results", results, "--format", "csv"], capsys)
    assert out.splitlines()[1].startswith("gem")  # R@1 by default: netvlad's is 1.0
    code, _, err = run_cli(["compare", "--results", results, "--metric", "nope"], capsys)
    assert code != 0 and "--metric 'nope': no record holds it; recorded: AUC-PR" in err


def test_eval_refuses_an_unknown_metric_in_one_line(capsys, tmp_path):
    code, _, err = run_cli(["eval", "--method", "gem", "--dataset", "corridor", "--metrics", "recall,nope",
                            "--out", str(tmp_path), *TINY_CLI], capsys)  # fmt: skip
    assert code != 0 and err.startswith("error: --metrics: unknown metric 'nope'; valid: ep, map, mrr, pr")
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())
