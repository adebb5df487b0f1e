"""Optimizer parameter groups and the linear learning-rate scaling rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from msr.errors import ConfigError

#: Base learning rates are given per this many images, as in the paper and detectron.
REFERENCE_BATCH = 16


def scaled_lr(base_lr: float, global_batch: int, reference_batch: int = REFERENCE_BATCH) -> float:
    """Return the learning rate for `global_batch` images per step (linear scaling rule)."""
    return base_lr * global_batch / reference_batch


def parameter_groups(model: nn.Module, no_decay_norm_bias: bool = False) -> list[dict[str, Any]]:
    """Return the optimizer parameter groups of the trainable parameters.

    With `no_decay_norm_bias`, a second group holds the biases and norm scales/shifts (1-d tensors)
    with weight decay 0; the first group takes the optimizer's own weight decay.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not no_decay_norm_bias:
        return [{"params": params}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    factory: Callable[..., torch.optim.Optimizer],
    model: nn.Module,
    global_batch: int,
    reference_batch: int | None = REFERENCE_BATCH,
    no_decay_norm_bias: bool = False,
) -> tuple[torch.optim.Optimizer, float]:
    """Return (optimizer, its learning rate) for `model`'s trainable parameters.

    `factory` is a partial optimizer class (`_partial_: true` in msr/conf/optimizer/) whose `lr` is given per
    `reference_batch` images; it is scaled to `global_batch` (None: used as is).
    """
    groups = parameter_groups(model, no_decay_norm_bias)
    return optimizer_for_groups(factory, groups, global_batch, reference_batch)


def optimizer_for_groups(
    factory: Callable[..., torch.optim.Optimizer],
    groups: list[dict[str, Any]],
    global_batch: int,
    reference_batch: int | None = REFERENCE_BATCH,
) -> tuple[torch.optim.Optimizer, float]:
    """Return (optimizer over the parameter `groups`, its learning rate scaled as in `build_optimizer`)."""
    base_lr = getattr(factory, "keywords", {}).get("lr")
    if base_lr is None:
        raise ConfigError("optimizer.lr is not set: the optimizer/<choice>.yaml must give a learning rate")
    lr = scaled_lr(float(base_lr), global_batch, reference_batch) if reference_batch else float(base_lr)
    return factory(groups, lr=lr), lr
