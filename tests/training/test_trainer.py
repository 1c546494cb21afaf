"""The training loop on a tiny run: records, resume equivalence, interruption, non-finite loss."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import tiny_config
from vpr_bench.runner import train_run
from vpr_bench.testing import TINY_CLI, TINY_TRAINING
from vpr_bench.training import state as ckpt
from vpr_bench.training.trainer import Trainer, TrainingError, TrainingInterrupted

# 12 queries per epoch in batches of 4: 3 batches an epoch, 6 in all; a checkpoint every 2 batches
TRAIN = {
    **TINY_TRAINING,
    "train.lr": 1e-3,
    "eval.batch_size": 32,
}


def config(root, out, **extra):
    return tiny_config(**{"data.dataset": f"folder:{root}", "out": str(out), **TRAIN, **extra})


def record(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def only_run(out):
    (run_dir,) = [p for p in out.glob("*/*/*") if (p / "config.json").is_file()]
    return run_dir


def fail_at(monkeypatch, step, action):
    calls = {"n": 0}
    original = Trainer.compute_loss

    def wrapped(self, *args):
        calls["n"] += 1
        if calls["n"] == step:
            result = action(self)
            if result is not None:
                return result
        return original(self, *args)

    monkeypatch.setattr(Trainer, "compute_loss", wrapped)


@pytest.fixture(scope="module")
def uninterrupted(synthetic_root, tmp_path_factory):
    return record(train_run(config(synthetic_root, tmp_path_factory.mktemp("full"))))


def test_training_writes_a_record(uninterrupted):
    assert uninterrupted["trained"] is True and uninterrupted["training"]["epochs"] == 2
    assert [h["epoch"] for h in uninterrupted["training"]["history"]] == [1, 2]
    assert all(h["tuples"] + h["skipped"] == 12 for h in uninterrupted["training"]["history"])
    assert set(uninterrupted["metrics"]) >= {"R@1", "R@5", "R@10", "R@20"}


def test_the_time_split_has_the_checkpoints_share(uninterrupted):
    split = uninterrupted["training"]["time_split_s"]
    assert {"cache refresh", "mining", "optimisation", "validation", "checkpoints"} <= set(split)


def test_checkpoints_follow_the_clock_mining_rounds_and_epoch_ends(synthetic_root, tmp_path, monkeypatch):
    now, written, save_state = {"s": 0.0}, [], ckpt.save_state
    monkeypatch.setattr(Trainer, "clock", staticmethod(lambda: now["s"]))

    def recording(path, state):  # in the writer's thread
        p = state["progress"]
        written.append((p["epoch"], p["position"], p["global_step"], p["finished"]))
        save_state(path, state)

    def a_minute_passes(self):
        now["s"] += 61

    monkeypatch.setattr(ckpt, "save_state", recording)
    fail_at(monkeypatch, 2, a_minute_passes)  # during batch 2
    every_minute = {"train.checkpoint_every": 0, "train.checkpoint_every_min": 1}
    run_dir = train_run(config(synthetic_root, tmp_path, **every_minute))
    assert written == [
        (0, 0, 0, False),  # the run's start
        (0, 0, 0, False),  # epoch 1's tuples mined
        (0, 2, 2, False),  # a minute later, after batch 2
        (1, 0, 3, False),  # epoch 1's end
        (1, 0, 3, False),  # epoch 2's tuples mined
        (2, 0, 6, True),  # epoch 2's end: finished
    ]
    assert ckpt.load_state(run_dir / ckpt.LAST)["progress"]["global_step"] == 6
    assert (run_dir / ckpt.BEST).is_file()


def test_resume_after_a_crash_mid_epoch_equals_uninterrupted(
    synthetic_root, tmp_path, monkeypatch, uninterrupted
):
    def crash(self):  # like SIGKILL: nothing is saved on the way out
        raise RuntimeError("killed")

    fail_at(
        monkeypatch, 5, crash
    )  # epoch 2, batch 2; the last checkpoint is after batch 4 (epoch 2, batch 1)
    with pytest.raises(RuntimeError, match="killed"):
        train_run(config(synthetic_root, tmp_path))
    monkeypatch.undo()
    run_dir = only_run(tmp_path)
    state = ckpt.load_state(run_dir / ckpt.LAST)
    assert (state["progress"]["epoch"], state["progress"]["position"], state["progress"]["global_step"]) == (
        1,
        1,
        4,
    )
    resumed = record(train_run(resume=run_dir))
    assert resumed["metrics"] == pytest.approx(uninterrupted["metrics"], abs=1e-9)
    assert [h["loss"] for h in resumed["training"]["history"]] == pytest.approx(
        [h["loss"] for h in uninterrupted["training"]["history"]], rel=1e-5
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_saves_then_resume_finishes(signum, synthetic_root, tmp_path, monkeypatch, uninterrupted):
    fail_at(monkeypatch, 2, lambda self: os.kill(os.getpid(), signum))
    with pytest.raises(TrainingInterrupted, match=r"interrupted at epoch 1, batch 2; .*--resume"):
        train_run(config(synthetic_root, tmp_path))
    monkeypatch.undo()
    run_dir = only_run(tmp_path)
    assert ckpt.load_state(run_dir / ckpt.LAST)["progress"]["global_step"] == 2
    assert record(train_run(resume=run_dir))["metrics"] == pytest.approx(uninterrupted["metrics"], abs=1e-9)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(synthetic_root, tmp_path, monkeypatch):
    fail_at(monkeypatch, 3, lambda self: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(
        TrainingError, match=r"non-finite loss \(nan\) at epoch 1, batch 3 \(step 3\); .*last.pt is kept"
    ):
        train_run(config(synthetic_root, tmp_path))
    state = ckpt.load_state(only_run(tmp_path) / ckpt.LAST)
    assert state["progress"]["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_resume_refuses_a_finished_run(synthetic_root, tmp_path, uninterrupted):
    from vpr_bench.errors import VPRBenchError

    run_dir = train_run(config(synthetic_root, tmp_path, **{"train.epochs": 1}))
    with pytest.raises(VPRBenchError, match="this run is finished"):
        train_run(resume=run_dir)


KILL_DEADLINE_S = 120  # for the run to reach a mid-epoch checkpoint of its 2nd epoch


def test_sigkill_mid_epoch_then_resume_from_the_cli(synthetic_root, tmp_path):
    out, log = tmp_path / "runs", tmp_path / "stderr.txt"
    args = [
        "--method",
        "gem",
        "--dataset",
        f"folder:{synthetic_root}",
        *TINY_CLI,
        "--out",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "1",  # one checkpoint a query: the widest mid-epoch window this tiny set allows
        "--negatives",
        "2",
        "--negative-samples",
        "20",
        "--checkpoint-every",
        "1",
        "--queries-per-epoch",
        "20",
        "--lr",
        "1e-3",
    ]
    seen = None  # the mid-epoch progress on disk when the kill is sent
    with log.open("wb") as stderr:  # a file, not a pipe: a full pipe would stall the run, not kill it
        proc = subprocess.Popen([sys.executable, "-m", "vpr_bench", "run", *args], stderr=stderr)
        try:
            deadline = time.monotonic() + KILL_DEADLINE_S
            while seen is None:
                if proc.poll() is not None:
                    pytest.fail(
                        f"the run ended (code {proc.returncode}) before a mid-epoch checkpoint of its "
                        f"2nd epoch, so it was never killed mid-run:\n{log.read_text()[-2000:]}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(f"no mid-epoch checkpoint of the 2nd epoch within {KILL_DEADLINE_S} s")
                lasts = list(out.glob("*/*/*/last.pt"))
                progress = ckpt.load_state(lasts[0])["progress"] if lasts else None
                if progress and progress["epoch"] >= 1 and progress["position"] >= 1:  # inside epoch 2+
                    seen = progress
                else:
                    time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None and seen is None:  # a failed wait: leave no process behind
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"exit code {proc.returncode}, not our SIGKILL"
    run_dir = only_run(out)
    killed_at = ckpt.load_state(run_dir / ckpt.LAST)["progress"]
    assert not killed_at["finished"] and not (run_dir / "metrics.json").exists()  # cut short mid-run
    assert 1 <= killed_at["epoch"] < 3 and killed_at["global_step"] >= seen["global_step"]
    done = subprocess.run(
        [sys.executable, "-m", "vpr_bench", "run", "--resume", str(run_dir)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert record(run_dir)["training"]["epochs"] == 3


def test_loss_and_mining_settings_reach_the_trainer(synthetic_root):
    from vpr_bench.datasets import load_split
    from vpr_bench.methods import build_method

    cfg = tiny_config(
        **{
            "data.data_root": str(synthetic_root),
            "train.mining_margin": 0.5,
            "train.distance": "squared-l2",
            "train.reduction": "sum",
            "data.train_pos_radius": 5.0,
        }
    )
    _, train = load_split(cfg.data, "train")
    trainer = Trainer(build_method(cfg.model), cfg, train, train, torch.device("cpu"), None)
    assert trainer.miner.mining_margin == 0.5 and trainer.miner.train_positives.radius == 5.0
    assert trainer.loss_fn.distance.power == 2 and type(trainer.loss_fn.reducer).__name__ == "SumReducer"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--train-pos-radius", "-1", "--train-pos-radius must be > 0"),
        ("--mining-margin", "0", "--mining-margin must be > 0"),
        ("--distance", "manhattan", "'manhattan' is not one of"),
    ],
)
def test_training_flags_are_read(flag, value, message, capsys):
    from vpr_bench.testing import run_cli

    code, _, err = run_cli(
        ["run", "--method", "gem", "--dataset", "synthetic", flag, value, *TINY_CLI], capsys
    )
    assert code != 0 and message in err
