"""The CLI end to end, in-process: records written, errors in one line with a non-zero exit."""

import json

import pytest

from vpr_bench.testing import TINY_CLI, run_cli

TINY = TINY_CLI


call = run_cli


def test_run_writes_a_record_and_compare_shows_it(synthetic_root, tmp_path, capsys):
    code, out, err = call(
        ["eval", "--method", "gem", "--dataset", f"folder:{synthetic_root}", "--out", str(tmp_path), *TINY],
        capsys,
    )
    assert code == 0, err
    (metrics,) = tmp_path.glob("folder-synthetic/gem/*/metrics.json")
    record = json.loads(metrics.read_text())
    assert set(record["metrics"]) >= {"R@1", "R@5", "R@10", "R@20"}
    assert record["metrics"]["R@1"] <= record["metrics"]["R@5"] <= record["metrics"]["R@20"]
    for field in ("descriptor_dim", "params", "ms_per_image", "ms_per_query", "peak_rss_mb"):
        assert record["cost"][field] > 0
    assert record["cost"]["device"].endswith(" threads)")  # the CPU's name, not just "cpu"
    assert record["protocol"]["pos_radius_m"] == 25.0 and record["protocol"]["num_queries"] == 20
    config = json.loads((metrics.parent / "config.json").read_text())
    assert config["seed"] == 1234 and config["model"]["backbone"] == "test_resnet"
    assert config["data"]["image_size"] == [32, 32] and config["preset"] == "demo"
    assert (metrics.parent / "run.log").read_text()
    code, out, _ = call(["compare", "--results", str(tmp_path), "--dataset", "folder-synthetic"], capsys)
    assert code == 0 and "gem" in out and "R@1" in out and max(map(len, out.splitlines())) <= 80
    code, out, _ = call(["compare", "--results", str(tmp_path), "--format", "csv"], capsys)
    assert code == 0 and record["run_id"] in out


def test_eval_recall_at_and_split(synthetic_root, tmp_path, capsys):
    code, _, err = call(
        [
            "eval",
            "--method",
            "gem",
            "--dataset",
            f"folder:{synthetic_root}",
            "--split",
            "val",
            "--recall-at",
            "1,3",
            "--out",
            str(tmp_path),
            *TINY,
        ],
        capsys,
    )
    assert code == 0, err
    (metrics,) = tmp_path.glob("*/gem/*/metrics.json")
    record = json.loads(metrics.read_text())
    assert {"R@1", "R@3"} <= set(record["metrics"]) and record["protocol"]["split"] == "val"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "nope", "--dataset", "synthetic"], "error: unknown method 'nope'; valid: boq, convap"),
        (["--method", "gem", "--dataset", "nowhere"], "error: unknown dataset 'nowhere'; valid: amstertime"),
        (
            ["--method", "gem", "--dataset", "synthetic", "--eval-batch-size", "-4"],
            "error: --eval-batch-size must be ≥ 1",
        ),
        (["--method", "gem", "--dataset", "synthetic", "--image-size", "big"], "'big': expected HxW"),
        (
            ["--method", "gem", "--dataset", "pitts30k", "--data-root", "/nonexistent"],
            "error: structure file pitts30k_test.mat not found",
        ),
    ],
)
def test_user_errors_are_one_line(args, message, capsys, data_dir):
    code, _, err = call(["eval", *TINY, *args], capsys)
    assert code != 0
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_malicious_checkpoint_is_refused_from_cli(synthetic_root, tmp_path, capsys):
    import pickle

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"model": print}))
    code, _, err = call(
        [
            "eval",
            "--method",
            "gem",
            "--dataset",
            f"folder:{synthetic_root}",
            "--checkpoint",
            str(evil),
            "--out",
            str(tmp_path),
            *TINY,
        ],
        capsys,
    )
    assert code == 2 and "refusing to load" in err and "evil.pt" in err


def test_offline_pretrained_request_warns_and_continues(synthetic_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    from vpr_bench.methods import backbones

    backbones.hub_reachable.cache_clear()
    args = [a if a != "--no-pretrained" else "--pretrained" for a in TINY if a != "--quiet"]
    code, _, err = call(
        ["eval", "--method", "gem", "--dataset", f"folder:{synthetic_root}", "--out", str(tmp_path), *args],
        capsys,
    )
    backbones.hub_reachable.cache_clear()
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("WARNING: pretrained weights")]
    assert (
        len(warnings) == 1 and "random initialisation" in warnings[0] and "--pretrained-file" in warnings[0]
    )
    (metrics,) = tmp_path.glob("*/gem/*/metrics.json")
    assert json.loads(metrics.read_text())["weights"] == "random"


def test_list_shows_builtins(capsys):
    code, out, _ = call(["list"], capsys)
    assert code == 0
    for name in (
        "pitts30k",
        "pitts250k",
        "tokyo247",
        "synthetic",
        "folder:<path>",
        "gem",
        "recall",
        "triplet",
    ):
        assert f"  {name} " in out
    assert "[built-in]" in out


def test_datasets_synth_makes_a_dataset_once(tmp_path, capsys):
    out = tmp_path / "big"
    args = ["datasets", "synth", "--places", "12", "--queries", "4", "--out", str(out), "--workers", "1"]
    assert call(args, capsys)[0] == 0
    assert len(list((out / "images/test/database").iterdir())) == 12
    assert len(list((out / "images/train/queries").iterdir())) == 8
    code, out_text, _ = call(args, capsys)
    assert code == 0 and "already holds" in out_text
    code, _, err = call([*args[:3], "13", *args[4:]], capsys)
    assert code == 2 and "already exists" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "error: --epochs must be ≥ 1"),
        (["--batch-size", "-1"], "error: --batch-size must be ≥ 1"),
        (["--lr", "0"], "error: --lr must be > 0"),
        (["--negatives", "5", "--negative-samples", "2"], "error: --negative-samples must be ≥ --negatives"),
        (["--loss", "nope"], "error: --loss 'nope' is not one of circle, contrastive, multi-similarity"),
    ],
)
def test_invalid_training_options(args, message, capsys, data_dir):
    code, _, err = call(["run", "--method", "gem", "--dataset", "synthetic", *TINY, *args], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not data_dir.exists()  # rejected before any dataset was generated


def test_resume_takes_no_other_options(capsys, tmp_path):
    code, _, err = call(["run", "--resume", str(tmp_path), "--epochs", "3"], capsys)
    assert code == 2 and "--resume uses the run's own config.json; drop --epochs" in err


def test_ivfpq_on_a_too_small_database_fails_in_one_line(synthetic_root, tmp_path, capsys):
    args = ["eval", "--method", "gem", "--dataset", f"folder:{synthetic_root}", "--out", str(tmp_path)]
    code, _, err = call([*args, *TINY, "--index", "ivfpq", "--nlist", "4", "--m", "8"], capsys)
    assert code == 2 and "--index ivfpq with --nlist 4 needs ≥ 256 database images" in err
    assert "Traceback" not in err


def test_float16_descriptors_give_the_same_recall(synthetic_root, tmp_path, capsys):
    args = ["eval", "--method", "gem", "--dataset", f"folder:{synthetic_root}", *TINY]
    records = []
    for dtype in ("float32", "float16"):
        code, _, err = call([*args, "--descriptor-dtype", dtype, "--out", str(tmp_path / dtype)], capsys)
        assert code == 0, err
        (path,) = (tmp_path / dtype).glob("*/gem/*/metrics.json")
        records.append(json.loads(path.read_text()))
    assert records[1]["protocol"]["index"] == "flat-fp16"
    assert records[1]["metrics"] == pytest.approx(records[0]["metrics"], abs=1e-9)
