"""Optimizer groups, lr scaling and the warmup + step/cosine schedules (msr/conf/optimizer, schedule)."""

from __future__ import annotations

import itertools
import math
from functools import partial

import pytest
import torch
from torch import nn

from msr.errors import ConfigError
from msr.training.optim import build_optimizer, parameter_groups, scaled_lr
from msr.training.schedules import warmup_cosine, warmup_multistep


def factors(make_scheduler, steps: int, lr: float = 1.0) -> list[float]:
    """Return the lr factor of the first `steps` optimizer steps of a schedule."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(optimizer)
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"] / lr)
        optimizer.step()
        scheduler.step()
    return values


def test_lr_is_given_per_16_images():
    assert scaled_lr(0.02, 16) == pytest.approx(0.02)
    assert scaled_lr(0.02, 4) == pytest.approx(0.005)
    assert scaled_lr(0.02, 64) == pytest.approx(0.08)


def test_warmup_then_steps():
    schedule = partial(
        warmup_multistep, total_steps=100, steps_per_epoch=1, unit="step", warmup=10, warmup_factor=0.1,
        milestones=[50, 80],
    )
    f = factors(schedule, 100)
    assert f[0] == pytest.approx(0.1)
    assert f[5] == pytest.approx(0.55)  # linear from 0.1 to 1 over 10 steps
    assert f[10] == f[49] == pytest.approx(1.0)
    assert f[50] == pytest.approx(0.1) and f[80] == pytest.approx(0.01)


def test_warmup_and_milestones_in_epochs():
    schedule = partial(
        warmup_multistep, total_steps=100, steps_per_epoch=20, unit="epoch", warmup=0.25,
        warmup_factor=0.5, milestones=[2, 4],
    )
    f = factors(schedule, 100)
    assert f[0] == pytest.approx(0.5) and f[5] == pytest.approx(1.0)  # 0.25 epoch = 5 steps
    assert f[39] == pytest.approx(1.0) and f[40] == pytest.approx(0.1) and f[80] == pytest.approx(0.01)


def test_cosine_reaches_the_floor():
    f = factors(
        partial(
            warmup_cosine, total_steps=100, steps_per_epoch=1, unit="step", warmup=0, warmup_factor=0.001,
            min_lr_factor=0.02,
        ),
        151,
    )
    assert f[0] == pytest.approx(1.0)
    assert f[50] == pytest.approx(0.02 + 0.98 * 0.5)
    assert f[100] == f[150] == pytest.approx(0.02)
    assert all(a >= b for a, b in itertools.pairwise(f))


def test_unknown_unit_is_an_error():
    with pytest.raises(ConfigError, match="unit must be one of step, epoch, got 'week'"):
        factors(
            partial(
                warmup_cosine, total_steps=10, steps_per_epoch=1, unit="week", warmup=1, warmup_factor=0.1,
                min_lr_factor=0.0,
            ),
            1,
        )


def test_optimizer_without_lr_is_an_error():
    with pytest.raises(ConfigError, match="optimizer.lr is not set"):
        build_optimizer(partial(torch.optim.SGD, momentum=0.9), nn.Linear(2, 2), global_batch=4)


def test_no_decay_on_norms_and_biases_and_lr_scaled_to_the_global_batch():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    sgd_factory = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-4)
    sgd, lr = build_optimizer(sgd_factory, model, global_batch=4, no_decay_norm_bias=True)
    assert lr == pytest.approx(0.025) and sgd.param_groups[0]["lr"] == pytest.approx(0.025)
    decay, no_decay = sgd.param_groups
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert {p.ndim for p in decay["params"]} == {2, 4} and {p.ndim for p in no_decay["params"]} == {1}
    assert sgd.defaults["momentum"] == 0.9
    adamw_factory = partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.05)
    adamw, lr = build_optimizer(adamw_factory, model, global_batch=64, reference_batch=None)
    assert isinstance(adamw, torch.optim.AdamW) and len(adamw.param_groups) == 1
    assert adamw.param_groups[0]["weight_decay"] == 0.05 and lr == 1e-3
    assert not math.isnan(adamw.defaults["lr"])


def test_frozen_parameters_are_not_optimized():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].requires_grad_(False)
    groups = parameter_groups(model)
    assert len(groups) == 1 and {id(p) for p in groups[0]["params"]} == {id(p) for p in model[1].parameters()}


def test_warmup_then_cosine_over_the_remaining_steps():
    schedule = partial(
        warmup_cosine, total_steps=110, steps_per_epoch=1, unit="step", warmup=10, warmup_factor=0.1,
        min_lr_factor=0.0,
    )
    f = factors(schedule, 130)
    assert f[0] == pytest.approx(0.1) and f[5] == pytest.approx(0.55) and f[10] == pytest.approx(1.0)
    assert f[60] == pytest.approx(0.5)  # half way through the 100 cosine steps
    assert f[110] == pytest.approx(0.0, abs=1e-12) and f[129] == pytest.approx(0.0, abs=1e-12)


def test_schedules_resume_from_their_state():
    """A resumed run (Lightning restores the scheduler's state_dict) continues the same lr sequence."""
    make = partial(
        warmup_cosine, total_steps=40, steps_per_epoch=1, unit="step", warmup=5, warmup_factor=0.1,
        min_lr_factor=0.05,
    )
    full = factors(make, 40)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make(optimizer)
    for _ in range(12):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    resumed_optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    resumed = make(resumed_optimizer)
    resumed.load_state_dict(state)
    resumed_optimizer.param_groups[0]["lr"] = optimizer.param_groups[0]["lr"]  # restored with the optimizer
    rest = []
    for _ in range(28):
        rest.append(resumed_optimizer.param_groups[0]["lr"])
        resumed_optimizer.step()
        resumed.step()
    assert rest == pytest.approx(full[12:])
