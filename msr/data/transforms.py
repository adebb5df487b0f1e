"""Detection transforms (torchvision.transforms.v2 on tv_tensors): resize, flip, colour jitter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms import v2


def _target_tensors(inputs: Any) -> tuple[torch.Tensor, ...]:
    """Return the per-instance plain tensors of a ``(image, target)`` sample that follow the boxes.

    Masks (``tv_tensors.Mask``) and boxes are filtered by ``SanitizeBoundingBoxes`` on their own.
    A module-level function (not a lambda) so the transform pickles into DataLoader workers.
    """
    target = inputs[1]
    return tuple(target[key] for key in ("labels", "area", "iscrowd") if key in target)


def _as_size_list(min_size: int | Sequence[int]) -> list[int]:
    """Return ``min_size`` as a non-empty list of positive ints."""
    sizes = [int(min_size)] if isinstance(min_size, (int, float)) else [int(s) for s in min_size]
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"min_size must be a positive int or a non-empty list of them, got {min_size!r}")
    return sizes


def build_transforms(
    train: bool,
    min_size: int | Sequence[int] | None = None,
    max_size: int | None = None,
    hflip_prob: float = 0.5,
    color_jitter: bool = False,
    targets: bool = True,
) -> v2.Compose | None:
    """Return the v2 pipeline applied to ``(image, target)`` samples (None when it has no step).

    - Resize (optional; ``min_size=None`` keeps the image size): the shorter side becomes
      ``min_size`` (training with a list: one size drawn per sample, for multi-scale training;
      evaluation: the last entry, as torchvision's ``GeneralizedRCNNTransform`` does), capped so the
      longer side is at most ``max_size``. Masks use nearest-neighbour interpolation.
    - Training only: horizontal flip with probability ``hflip_prob``, and if ``color_jitter`` a
      mild brightness/contrast/saturation/hue jitter (image only).
    - With ``targets`` (set False for unlabelled pictures): boxes clamped to the image, then
      boxes narrower or shorter than 1 px removed with their masks, labels, areas, crowd flags.

    The torchvision Mask R-CNN also resizes internally; the resize here exists for multi-scale
    training and to keep batches small.
    """
    steps: list[Any] = []
    if min_size is not None:
        sizes = _as_size_list(min_size)
        steps.append(v2.RandomShortestSize(sizes if train else sizes[-1:], max_size=max_size))
    if train and hflip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip_prob))
    if train and color_jitter:
        steps.append(v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02))
    if targets:
        steps.append(v2.ClampBoundingBoxes())
        steps.append(v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=_target_tensors))
    return v2.Compose(steps) if steps else None
