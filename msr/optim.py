"""Optimizers and learning-rate schedules: SGD/AdamW, linear warmup, then step or cosine decay."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adamw")
DECAYS = ("step", "cosine", "none")
REFERENCE_BATCH = 16  # base learning rates are given per 16 images, as in the paper and detectron


def scaled_lr(base_lr: float, global_batch: int, reference_batch: int = REFERENCE_BATCH) -> float:
    """Return the learning rate for `global_batch` images per step (linear scaling rule)."""
    return base_lr * global_batch / reference_batch


def parameter_groups(model: nn.Module, weight_decay: float, no_decay_norm_bias: bool) -> list[dict]:
    """Return optimizer parameter groups; norms and biases get no weight decay if asked."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not no_decay_norm_bias:
        return [{"params": [p for _, p in params], "weight_decay": weight_decay}]
    decay = [p for _, p in params if p.ndim > 1]
    no_decay = [p for _, p in params if p.ndim <= 1]  # biases and norm scales/shifts
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    model: nn.Module,
    name: str = "sgd",
    lr: float = 0.02,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    no_decay_norm_bias: bool = False,
    betas: Sequence[float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """Return an SGD (momentum) or AdamW optimizer over the model's trainable parameters."""
    groups = parameter_groups(model, weight_decay, no_decay_norm_bias)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def lr_multiplier(
    total_steps: int,
    warmup_steps: int = 0,
    warmup_factor: float = 0.001,
    decay: str = "step",
    milestones: Iterable[int] = (),
    gamma: float = 0.1,
    min_lr_factor: float = 0.0,
) -> Callable[[int], float]:
    """Return f(step) -> factor of the base lr: linear warmup from warmup_factor, then the decay.

    step decay multiplies by gamma at each milestone (in steps); cosine goes from 1 to min_lr_factor
    over total_steps; none keeps 1.
    """
    if decay not in DECAYS:
        raise ValueError(f"unknown lr decay {decay!r}; choose one of {', '.join(DECAYS)}")
    milestones = sorted(int(m) for m in milestones)
    total_steps = max(int(total_steps), 1)

    def factor(step: int) -> float:
        if decay == "step":
            value = gamma ** sum(step >= m for m in milestones)
        elif decay == "cosine":
            progress = min(step / total_steps, 1.0)
            value = min_lr_factor + (1 - min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        else:
            value = 1.0
        if step < warmup_steps:
            alpha = step / warmup_steps
            value *= warmup_factor * (1 - alpha) + alpha
        return value

    return factor
