"""Batch collation for detection samples of different sizes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def collate_fn(batch: Sequence[tuple[Any, dict]]) -> tuple[list, list[dict]]:
    """Return ``(images, targets)``: the batch's images and target dicts as two lists (no stacking)."""
    images = [sample[0] for sample in batch]
    targets = [sample[1] for sample in batch]
    return images, targets
