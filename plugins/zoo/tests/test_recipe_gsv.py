"""MixVPR trained as its authors train it (``--recipe gsv``): from a tiny timm backbone, on a GSV-Cities
tree in the real layout (three cities, places of 4–6 images, the real CSV header), validated and tested on
a standard split, one epoch on the CPU: the loss decreases, the record's budget names the recipe, and
``--resume`` after ``kill -9`` continues it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from vpr_bench.api import Trainer
from vpr_bench.api import training_state as ckpt
from vpr_bench.testing import TINY_CLI, make_gsv_cities, run_cli, synthetic_root  # noqa: F401  (fixture)

OPTIONS = ("map_cells=4", "out_channels=8", "out_rows=2")  # test_resnet to layer3 at 32×32: a 2×2 map
MIXVPR = ["--method", "mixvpr", *TINY_CLI, "--backbone", "test_resnet",
          *(f"--model-option={option}" for option in OPTIONS)]  # fmt: skip
KILL_DEADLINE_S = 120


def gsv_args(gsv_root, val_root, out, *extra):
    return [
        "run", *MIXVPR, "--dataset", f"folder:{val_root}", "--preset", "demo", "--recipe", "gsv",
        "--train-dataset", "gsv-cities", "--train-data-root", str(gsv_root),
        "--train-cities", "London,Boston,OSL",
        "--places-per-batch", "4", "--lr", "1e-3", "--out", str(out), "--epochs", "1", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def gsv_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gsv") / "gsv-cities"
    make_gsv_cities(root)
    return root


def test_mixvpr_trains_one_epoch_on_gsv_cities_and_the_loss_decreases(
    gsv_root,
    synthetic_root,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    losses = []
    original = Trainer.step

    def recording(self, loss, share, bar):
        losses.append(loss.item())
        return original(self, loss, share, bar)

    monkeypatch.setattr(Trainer, "step", recording)
    # 11 places of ≥ 4 images; 3 passes of 2 batches of 4 places × 4 images in the epoch
    code, _, err = run_cli(gsv_args(gsv_root, synthetic_root, tmp_path, "--places-per-epoch", "24"), capsys)
    assert code == 0, err
    assert len(losses) == 6 and np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses
    (run_dir,) = tmp_path.glob("*/mixvpr/*")
    record = json.loads((run_dir / "metrics.json").read_text())
    budget = record["budget"]
    assert (budget["recipe"], budget["train_dataset"], budget["epochs"]) == ("gsv", "gsv-cities", 1)
    assert (budget["places_per_batch"], budget["images_per_place"], budget["images_seen"]) == (4, 4, 96)
    assert (budget["precision"], budget["loss"], budget["miner"]) == (
        "fp32",
        "multi-similarity",
        "multi-similarity",
    )
    assert record["method"] == "mixvpr" and record["trained"] is True


def test_mixvpr_resumes_after_kill_9(gsv_root, synthetic_root, tmp_path):  # noqa: F811
    out, log = tmp_path / "runs", tmp_path / "stderr.txt"
    # 10 batches in the one epoch, a checkpoint after each: a mid-epoch window to kill in
    args = gsv_args(gsv_root, synthetic_root, out, "--places-per-epoch", "40", "--checkpoint-every", "1")
    seen = None
    with log.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "vpr_bench", *args], stderr=stderr)
        try:
            deadline = time.monotonic() + KILL_DEADLINE_S
            while seen is None:
                if proc.poll() is not None:
                    ended = f"the run ended (code {proc.returncode}) before it was killed"
                    pytest.fail(f"{ended}:\n{log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no mid-epoch checkpoint within {KILL_DEADLINE_S} s")
                lasts = list(out.glob("*/*/*/last.pt"))
                progress = ckpt.load_state(lasts[0])["progress"] if lasts else None
                if progress and 2 <= progress["position"] < 9:
                    seen = progress
                else:
                    time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None and seen is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (run_dir,) = out.glob("*/mixvpr/*")
    state = ckpt.load_state(run_dir / ckpt.LAST)
    assert state["progress"]["epoch"] == 0 and not (run_dir / "metrics.json").exists()
    assert state["places"]["epoch"] == 0 and tuple(state["places"]["rows"].shape) == (10, 4, 4)
    done = subprocess.run(
        [sys.executable, "-m", "vpr_bench", "run", "--resume", str(run_dir)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["training"]["steps"] == 10 and record["budget"]["images_seen"] == 40 * 4
