"""Helpers of the scale-out tests: the entry tests' tiny overrides and subprocess runners."""

from __future__ import annotations

from support.cli import TINY, run_batch, run_cli, succeeded, train_case

#: TINY with 4 training steps and one evaluation at the end.
TINY_STEPS = [*TINY, "schedule=cpu_tiny"]
#: Two CPU processes under DDP (gloo).
DDP_CPU = ["trainer=ddp_cpu", "trainer.devices=2"]

__all__ = ["DDP_CPU", "TINY", "TINY_STEPS", "run_batch", "run_cli", "succeeded", "train_case"]
