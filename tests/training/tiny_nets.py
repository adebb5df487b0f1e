"""A very narrow MS R-CNN for the training-glue tests (64-pixel pictures, one step well under a second)."""

from __future__ import annotations

from functools import partial

import torch

from msr.models import ConcatMaskIoUHead, build_detector, build_resnet_fpn_backbone


def tiny_net(num_classes: int = 3) -> torch.nn.Module:
    """Return a very narrow MS R-CNN for 64-pixel pictures."""
    return build_detector(
        num_classes,
        build_resnet_fpn_backbone("resnet18", "bn", fpn_channels=16),
        maskiou_head=partial(ConcatMaskIoUHead, conv_channels=16, fc_dim=32),
        box_head_dim=32,
        mask_head_channels=16,
        mask_head_convs=1,
        min_size=64,
        max_size=64,
        rpn_post_nms_top_n_train=32,
        box_batch_size_per_image=16,
    )
