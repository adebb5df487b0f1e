"""Learning-rate schedules per optimizer step: linear warmup, then step or cosine decay.

The `_target_`s of conf/schedule/*: partial functions that the LightningModule completes with the
optimizer, the number of optimizer steps of the run and the steps per epoch (so warmup and milestones
can be given in epochs, `unit: epoch`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from msr.errors import ConfigError

UNITS = ("step", "epoch")


def _steps(value: float, unit: str, steps_per_epoch: float) -> int:
    """Return `value` (in `unit`s) as a whole number of optimizer steps."""
    if unit not in UNITS:
        raise ConfigError(f"schedule.scheduler.unit must be one of {', '.join(UNITS)}, got {unit!r}")
    return round(float(value) * (steps_per_epoch if unit == "epoch" else 1.0))


def _warmup(step: int, warmup_steps: int, warmup_factor: float) -> float:
    """Return the warmup multiplier at `step`: linear from `warmup_factor` to 1 over `warmup_steps`."""
    if step >= warmup_steps:
        return 1.0
    alpha = step / warmup_steps
    return warmup_factor * (1 - alpha) + alpha


def warmup_multistep(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: float,
    unit: str = "step",
    warmup: float = 0,
    warmup_factor: float = 0.001,
    milestones: Sequence[float] = (),
    gamma: float = 0.1,
) -> LRScheduler:
    """Return a per-step scheduler: linear warmup, then the lr times `gamma` at each milestone."""
    warmup_steps = _steps(warmup, unit, steps_per_epoch)
    steps = sorted(_steps(m, unit, steps_per_epoch) for m in milestones)

    def factor(step: int) -> float:
        return gamma ** sum(step >= m for m in steps) * _warmup(step, warmup_steps, warmup_factor)

    return LambdaLR(optimizer, factor)


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: float,
    unit: str = "step",
    warmup: float = 0,
    warmup_factor: float = 0.001,
    min_lr_factor: float = 0.0,
) -> LRScheduler:
    """Return a per-step scheduler: linear warmup, cosine from the lr to `min_lr_factor` x lr."""
    warmup_steps = _steps(warmup, unit, steps_per_epoch)
    total = max(int(total_steps), 1)

    def factor(step: int) -> float:
        progress = min(step / total, 1.0)
        value = min_lr_factor + (1 - min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        return value * _warmup(step, warmup_steps, warmup_factor)

    return LambdaLR(optimizer, factor)


SchedulerFactory = Callable[..., LRScheduler]
