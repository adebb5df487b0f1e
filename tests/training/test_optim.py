"""Optimizer groups, lr scaling and the warmup + step/cosine schedule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from msr.optim import build_optimizer, lr_multiplier, scaled_lr


def test_lr_is_given_per_16_images():
    assert scaled_lr(0.02, 16) == pytest.approx(0.02)
    assert scaled_lr(0.02, 4) == pytest.approx(0.005)
    assert scaled_lr(0.02, 64) == pytest.approx(0.08)


def test_warmup_then_steps():
    f = lr_multiplier(total_steps=100, warmup_steps=10, warmup_factor=0.1, decay="step", milestones=[50, 80])
    assert f(0) == pytest.approx(0.1)
    assert f(5) == pytest.approx(0.55)  # linear from 0.1 to 1 over 10 steps
    assert f(10) == f(49) == pytest.approx(1.0)
    assert f(50) == pytest.approx(0.1) and f(80) == pytest.approx(0.01)


def test_cosine_reaches_the_floor():
    f = lr_multiplier(total_steps=100, decay="cosine", min_lr_factor=0.02)
    assert f(0) == pytest.approx(1.0)
    assert f(50) == pytest.approx(0.02 + 0.98 * 0.5)
    assert f(100) == f(150) == pytest.approx(0.02)
    values = [f(s) for s in range(101)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_unknown_names_are_errors():
    with pytest.raises(ValueError, match="unknown lr decay 'linear'"):
        lr_multiplier(10, decay="linear")
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        build_optimizer(nn.Linear(2, 2), name="adam")


def test_no_decay_on_norms_and_biases():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    sgd = build_optimizer(model, "sgd", lr=0.1, weight_decay=1e-4, no_decay_norm_bias=True)
    decay, no_decay = sgd.param_groups
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert {p.ndim for p in decay["params"]} == {2, 4} and {p.ndim for p in no_decay["params"]} == {1}
    assert sgd.defaults["momentum"] == 0.9
    adamw = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.05)
    assert isinstance(adamw, torch.optim.AdamW) and len(adamw.param_groups) == 1
    assert adamw.param_groups[0]["weight_decay"] == 0.05 and not math.isnan(adamw.defaults["lr"])
