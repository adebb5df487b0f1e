"""Tiny models and a fixed batch for the model tests (CPU, a fraction of a second per step)."""

from __future__ import annotations

import functools

import pytest
import torch

from msr.models import MaskIoULoss, build_detector, build_resnet_fpn_backbone, input_design, target_variant

#: build_resnet_fpn_backbone arguments of the tiny model.
TINY_BACKBONE = dict(name="resnet18", norm="bn", trainable_layers=5, fpn_channels=32)
#: MaskIoU head arguments of the tiny model.
TINY_HEAD = dict(conv_channels=32, fc_dim=64)
#: build_detector arguments of the tiny model.
TINY = dict(
    box_head_dim=64,
    mask_head_channels=32,
    mask_head_convs=2,
    anchor_sizes=(8, 16, 32, 64, 128),
    min_size=96,
    max_size=128,
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=64,
    rpn_pre_nms_top_n_test=200,
    rpn_post_nms_top_n_test=64,
    box_batch_size_per_image=32,
    box_detections_per_img=20,
    box_score_thresh=0.0,
)


def tiny_model(
    num_classes: int = 3,
    design: str | None = "concat",
    target: str = "target_class",
    backbone: dict | None = None,
    head: dict | None = None,
    loss: dict | None = None,
    **overrides,
):
    """Return a narrow ResNet-18-FPN MS R-CNN for CPU tests (design=None: plain Mask R-CNN).

    backbone / head / loss override TINY_BACKBONE / TINY_HEAD / MaskIoULoss's arguments; the other
    keyword arguments override TINY (build_detector's). layout="v2" gives the backbone a BN FPN.
    """
    fpn_norm = "bn" if overrides.get("layout") == "v2" else None
    body = build_resnet_fpn_backbone(**{**TINY_BACKBONE, "fpn_norm": fpn_norm, **(backbone or {})})
    factory = None
    if design is not None:
        factory = functools.partial(input_design(design), **{**TINY_HEAD, **(head or {})})
    return build_detector(
        num_classes,
        body,
        maskiou_head=factory,
        maskiou_target=target_variant(target)(),
        maskiou_loss=MaskIoULoss(**(loss or {})),
        **{**TINY, **overrides},
    )


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
