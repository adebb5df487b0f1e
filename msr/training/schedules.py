"""Learning-rate schedules per optimizer step, built from torch's schedulers: a linear warmup
(`LinearLR`), then step decay (`MultiStepLR`) or cosine decay (`CosineAnnealingLR`).

The `_target_`s of msr/conf/schedule/*: partial functions that the LightningModule completes with the
optimizer, the number of optimizer steps of the run and the optimizer steps per epoch, so that warmup
and milestones can be given in epochs (`unit: epoch`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    SequentialLR,
)

from msr.errors import ConfigError

UNITS = ("step", "epoch")
#: A ConstantLR that never ends: the cosine's floor, held after the last step of the run.
HOLD_FOREVER = 2**62


def to_steps(value: float, unit: str, steps_per_epoch: float | None) -> int:
    """Return `value` (in `unit`s) as a whole number of optimizer steps."""
    if unit not in UNITS:
        raise ConfigError(f"schedule.scheduler.unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if unit == "step":
        return round(float(value))
    if not steps_per_epoch:
        raise ConfigError("schedule.scheduler.unit=epoch needs training by epochs (schedule.max_epochs > 0)")
    return round(float(value) * steps_per_epoch)


def linear_warmup(optimizer: torch.optim.Optimizer, steps: int, factor: float) -> LinearLR:
    """Return the warmup: the lr rises linearly from `factor` x lr to lr over `steps` steps."""
    return LinearLR(optimizer, start_factor=factor, end_factor=1.0, total_iters=steps)


def warmup_multistep(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: float | None,
    *,
    unit: str,
    warmup: float,
    warmup_factor: float,
    milestones: Sequence[float],
    gamma: float = 0.1,
) -> LRScheduler:
    """Return the detectron/maskrcnn-benchmark schedule: a linear warmup, then the lr times `gamma` at
    every milestone (milestones count from the start of the run, as in the paper's 1x schedule).

    No default but `gamma`'s: msr/conf/schedule/ holds each schedule's values."""
    warmup_steps = to_steps(warmup, unit, steps_per_epoch)
    steps = sorted(to_steps(m, unit, steps_per_epoch) for m in milestones)
    decay = MultiStepLR(optimizer, milestones=[max(m - warmup_steps, 0) for m in steps], gamma=gamma)
    if warmup_steps <= 0:
        return decay
    warmup_phase = linear_warmup(optimizer, warmup_steps, warmup_factor)
    return SequentialLR(optimizer, [warmup_phase, decay], milestones=[warmup_steps])


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: float | None,
    *,
    unit: str,
    warmup: float,
    warmup_factor: float,
    min_lr_factor: float,
) -> LRScheduler:
    """Return a linear warmup, then a cosine from the lr to `min_lr_factor` x lr over the remaining steps of
    the run; steps beyond `total_steps` (a resumed run given more steps) stay at that floor.

    No defaults: msr/conf/schedule/ holds each schedule's values."""
    warmup_steps = to_steps(warmup, unit, steps_per_epoch)
    decay_steps = max(int(total_steps) - warmup_steps, 1)
    lr = optimizer.param_groups[0]["lr"]
    cosine = CosineAnnealingLR(optimizer, T_max=decay_steps, eta_min=min_lr_factor * lr)
    floor = ConstantLR(optimizer, factor=min_lr_factor, total_iters=HOLD_FOREVER)
    if warmup_steps <= 0:
        return SequentialLR(optimizer, [cosine, floor], milestones=[decay_steps])
    warmup_phase = linear_warmup(optimizer, warmup_steps, warmup_factor)
    milestones = [warmup_steps, warmup_steps + decay_steps]
    return SequentialLR(optimizer, [warmup_phase, cosine, floor], milestones=milestones)
