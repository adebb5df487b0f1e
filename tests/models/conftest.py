"""A fixed batch for the model tests (the tiny models: support.tiny_nets)."""

from __future__ import annotations

import pytest
import torch


def make_batch(seed: int = 0):
    """Return (images, targets): two 96x128 images with two and three rectangle/disc instances."""
    gen = torch.Generator().manual_seed(seed)
    images, targets = [], []
    specs = [
        [(1, (10, 12, 60, 70)), (2, (64, 20, 120, 90))],
        [(2, (5, 5, 40, 40)), (1, (50, 30, 110, 92)), (2, (20, 50, 70, 90))],
    ]
    yy, xx = torch.meshgrid(torch.arange(96), torch.arange(128), indexing="ij")
    for spec in specs:
        image = torch.rand(3, 96, 128, generator=gen) * 0.2
        boxes, labels, masks = [], [], []
        for label, (x1, y1, x2, y2) in spec:
            if label == 1:  # rectangle
                mask = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
            else:  # ellipse inscribed in the box
                cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
                mask = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1
            image[label - 1, mask] += 0.8
            boxes.append([x1, y1, x2, y2])
            labels.append(label)
            masks.append(mask.to(torch.uint8))
        images.append(image.clamp(0, 1))
        targets.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32),
                "labels": torch.tensor(labels, dtype=torch.int64),
                "masks": torch.stack(masks),
            }
        )
    return images, targets


@pytest.fixture
def batch():
    return make_batch()
