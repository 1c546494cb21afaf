"""Mixed precision (``--precision``): fp16 refused on a CPU in one line, bf16 autocast on a CPU, the
scaled step of fp16 and its state, and the budget naming the precision."""

import json

import pytest
import torch

from tests.conftest import tiny_config
from vpr_bench.errors import ConfigError
from vpr_bench.runner import train_run
from vpr_bench.testing import TINY_CLI, TINY_TRAINING, run_cli
from vpr_bench.training.precision import Precision
from vpr_bench.training.trainer import Trainer


def test_fp16_on_a_cpu_is_refused_in_one_line(synthetic_root, capsys):
    args = [
        "run",
        "--method",
        "gem",
        "--dataset",
        f"folder:{synthetic_root}",
        *TINY_CLI,
        "--precision",
        "fp16",
    ]
    code, _, err = run_cli(args, capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "--precision fp16 needs a CUDA device, not cpu" in err and "bf16 or fp32" in err


def test_bf16_runs_the_forward_pass_under_autocast_and_the_loss_in_float32(
    synthetic_root, tmp_path, monkeypatch
):
    seen = []
    original = Trainer.compute_loss

    def check(self, embeddings, *rest):
        seen.append((embeddings.dtype, torch.is_autocast_enabled("cpu")))
        return original(self, embeddings, *rest)

    monkeypatch.setattr(Trainer, "compute_loss", check)
    forward_dtypes = []
    monkeypatch.setattr(torch.nn.Conv2d, "forward", _recording(torch.nn.Conv2d.forward, forward_dtypes))
    cfg = tiny_config(**{"data.dataset": f"folder:{synthetic_root}", "out": str(tmp_path), **TINY_TRAINING,
                         "train.epochs": 1, "train.precision": "bf16"})  # fmt: skip
    run_dir = train_run(cfg)
    assert seen and all(dtype == torch.float32 and not autocast for dtype, autocast in seen)
    assert torch.bfloat16 in forward_dtypes  # the training forward passes (validation stays fp32)
    assert torch.float32 in forward_dtypes
    assert json.loads((run_dir / "metrics.json").read_text())["budget"]["precision"] == "bf16"


def _recording(forward, dtypes):
    def wrapped(self, x):
        out = forward(self, x)
        dtypes.append(out.dtype)
        return out

    return wrapped


def test_fp32_adds_nothing_and_the_scaled_step_keeps_its_state():
    fp32 = Precision("fp32", torch.device("cpu"))
    assert fp32.scaler is None and fp32.state_dict() == {}
    with fp32.autocast():
        assert not torch.is_autocast_enabled("cpu")
    # the fp16 path's step, with torch's gradient scaler (CUDA in use; its CPU twin here)
    scaled = Precision("fp32", torch.device("cpu"))
    scaled.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    scaled.step(model(torch.ones(2, 3)).sum(), optimizer)
    assert not torch.equal(model.weight, before)  # unscaled before the step: a normal SGD step
    torch.testing.assert_close(model.weight, before - 0.1 * 2 * torch.ones(1, 3))
    inf = model(torch.ones(2, 3)).sum() * float("inf")
    kept = model.weight.detach().clone()
    scaled.step(inf, optimizer)  # overflowing gradients: the step is skipped, the scale halved
    assert torch.equal(model.weight, kept) and scaled.scaler.get_scale() == 2.0**9
    other = Precision("fp32", torch.device("cpu"))
    other.scaler = torch.amp.GradScaler("cpu")
    other.load_state_dict(scaled.state_dict())
    assert other.scaler.get_scale() == 2.0**9


def test_bf16_on_a_gpu_without_it_and_fp16_on_a_cpu_are_refused(monkeypatch):
    with pytest.raises(ConfigError, match="--precision fp16 needs a CUDA device"):
        Precision("fp16", torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(ConfigError, match="Tesla V100 has no bfloat16; use fp16"):
        Precision("bf16", torch.device("cuda"))
