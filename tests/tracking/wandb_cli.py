"""The msr-train overrides of the tracking tests (the entry tests' helpers, with the W&B logger)."""

from __future__ import annotations

from support.cli import TINY, run_cli

#: msr-train overrides of the tracking tests: TINY with the W&B logger in place of CSV, 2 sample pictures.
TINY_WANDB = [o for o in TINY if not o.startswith("logger=")] + [
    "logger=wandb",
    "callbacks.figures.num_images=2",
    "schedule=cpu_tiny",
]

__all__ = ["TINY_WANDB", "run_cli"]
