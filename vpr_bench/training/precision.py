"""Mixed-precision training (``--precision``), for every recipe: the forward pass under ``torch.autocast``
in bfloat16 or float16, the loss in float32 on the descriptors cast back, and for float16 a gradient
scaler (torch's AMP recipe; Lightning's ``precision=16`` / ``"16-mixed"``, which MixVPR and BoQ train
with). Evaluation (validation, test) stays in float32.

On a CPU, fp16 is refused (autocast there is slow and its use is CUDA's); bf16 runs (torch's CPU autocast
supports it; a line says so: on CPUs without bfloat16 instructions it is slower than fp32). On a GPU
without bfloat16 support, bf16 is refused.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from vpr_bench.errors import ConfigError

log = logging.getLogger(__name__)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def check_precision(name: str, device: torch.device) -> None:
    """A ConfigError naming the fix where ``--precision name`` cannot run on ``device``."""
    if name == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"--precision fp16 needs a CUDA device, not {device.type} (float16 autocast with a gradient "
            "scaler is a GPU recipe): use --precision bf16 or fp32 here"
        )
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use fp16")


class Precision:
    """Autocast for the forward pass and, for fp16, the gradient scaler of the backward pass and step."""

    def __init__(self, name: str, device: torch.device):
        check_precision(name, device)
        self.name, self.device, self.dtype = name, device, DTYPES[name]
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None
        if name == "bf16" and device.type == "cpu":
            log.info("--precision bf16 on the CPU: the forward pass under bfloat16 autocast")

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Zero the gradients, back-propagate ``loss`` and step ``optimizer`` (scaled for fp16: a step
        whose gradients overflow is skipped and the scale lowered, as ``GradScaler`` does)."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
