"""The one builder of tiny models for the tests (CPU, a fraction of a second per step)."""

from __future__ import annotations

import functools

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
    preset: dict | None = None,
    **overrides,
) -> torch.nn.Module:
    """Return a narrow ResNet-18-FPN MS R-CNN for CPU tests (design=None: plain Mask R-CNN).

    backbone / head / loss override TINY_BACKBONE / TINY_HEAD / MaskIoULoss's arguments; the other
    keyword arguments override `preset` (build_detector's arguments; default TINY). layout="v2" gives the
    backbone a BN FPN.
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
        **{**(TINY if preset is None else preset), **overrides},
    )


#: The narrowest model (64-px pictures, one step well under a second): the training-glue tests'.
NARROW_BACKBONE = dict(name="resnet18", norm="bn", trainable_layers=3, fpn_channels=16)
NARROW_HEAD = dict(conv_channels=16, fc_dim=32)
NARROW = dict(
    box_head_dim=32,
    mask_head_channels=16,
    mask_head_convs=1,
    min_size=64,
    max_size=64,
    rpn_post_nms_top_n_train=32,
    box_batch_size_per_image=16,
)


def tiny_net(num_classes: int = 3) -> torch.nn.Module:
    """Return the narrowest MS R-CNN (NARROW, detector defaults otherwise) for 64-pixel pictures."""
    return tiny_model(num_classes, backbone=NARROW_BACKBONE, head=NARROW_HEAD, preset=NARROW)
