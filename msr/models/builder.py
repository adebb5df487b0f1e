"""Build Mask Scoring R-CNN (or plain Mask R-CNN, maskiou=False) from plain arguments."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from msr.models.backbones import build_resnet_fpn_backbone
from msr.models.maskiou_head import MaskIoUHead, maskiou_feature_size
from msr.models.roi_heads import MaskScoringRoIHeads
from msr.models.weights import freeze_all_but_maskiou, load_weights

LAYOUTS = ("v1", "v2")
_FEATURE_MAPS = ["0", "1", "2", "3"]


class MaskScoringRCNN(MaskRCNN):
    """torchvision's MaskRCNN whose RoI heads carry the MaskIoU branch (state_dict-compatible with it).

    In eval mode forward returns, per image, torchvision's boxes/labels/scores/masks plus `mask_ious`
    and `mask_scores` when the MaskIoU head is present; in train mode a dict of losses that adds
    `loss_maskiou`.
    """

    def __init__(
        self, backbone: nn.Module, maskiou_head: MaskIoUHead | None = None, maskiou_options=None, **kwargs
    ):
        super().__init__(backbone, **kwargs)
        options = dict(maskiou_options or {})
        if maskiou_head is not None and maskiou_feature_size(maskiou_head.input_design) != 14:
            size = maskiou_feature_size(maskiou_head.input_design)
            options["maskiou_roi_pool"] = MultiScaleRoIAlign(_FEATURE_MAPS, size, sampling_ratio=2)
        self.roi_heads = MaskScoringRoIHeads.from_roi_heads(
            self.roi_heads, maskiou_head=maskiou_head, **options
        )

    @property
    def has_maskiou(self) -> bool:
        """True for MS R-CNN, False for the Mask R-CNN baseline."""
        return self.roi_heads.has_maskiou


def build_model(
    num_classes: int,
    backbone: str = "resnet50",
    norm: str = "frozen_bn",
    trainable_backbone_layers: int = 3,
    layout: str = "v1",
    fpn_channels: int = 256,
    box_head_dim: int = 1024,
    mask_head_channels: int = 256,
    mask_head_convs: int = 4,
    anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    rpn_batch_size_per_image: int = 256,
    rpn_pre_nms_top_n_train: int = 2000,
    rpn_pre_nms_top_n_test: int = 1000,
    rpn_post_nms_top_n_train: int = 2000,
    rpn_post_nms_top_n_test: int = 1000,
    box_batch_size_per_image: int = 512,
    box_positive_fraction: float = 0.25,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    box_detections_per_img: int = 100,
    maskiou: bool = True,
    maskiou_design: str = "concat",
    maskiou_conv_channels: int = 256,
    maskiou_num_convs: int = 4,
    maskiou_fc_dim: int = 1024,
    maskiou_target: str = "target_class",
    maskiou_threshold: float = 0.0,
    maskiou_loss_weight: float = 1.0,
    maskiou_binarize_threshold: float = 0.5,
    maskiou_detach: bool = False,
    backbone_weights: str | None = None,
    maskrcnn_weights: str | None = None,
    weights: str | None = None,
    allow_class_mismatch: bool = False,
    freeze_except_maskiou: bool = False,
) -> MaskScoringRCNN:
    """Return a MaskScoringRCNN (plain Mask R-CNN through the same code when maskiou=False).

    num_classes counts the background. Backbone weights are random unless a local file is named:
    backbone_weights (an ImageNet ResNet state_dict in torchvision's format), maskrcnn_weights (a
    torchvision Mask R-CNN checkpoint: everything loads, only the MaskIoU head is new) or weights (an
    msr checkpoint). layout="v2" gives the heavier heads of torchvision's maskrcnn_resnet50_fpn_v2
    (BN in the FPN and heads, two-conv RPN head, four-conv box head).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if len(anchor_sizes) != len(_FEATURE_MAPS) + 1:
        raise ValueError(f"anchor_sizes needs one size per FPN level (5), got {list(anchor_sizes)}")
    v2 = layout == "v2"
    body = build_resnet_fpn_backbone(
        backbone, norm, trainable_backbone_layers, fpn_channels, fpn_norm="bn" if v2 else None
    )
    anchors = AnchorGenerator(
        tuple((int(s),) for s in anchor_sizes), (tuple(float(a) for a in aspect_ratios),) * len(anchor_sizes)
    )
    num_anchors = anchors.num_anchors_per_location()[0]
    if v2:
        rpn_head = RPNHead(fpn_channels, num_anchors, conv_depth=2)
        box_head = FastRCNNConvFCHead(
            (fpn_channels, 7, 7), [256, 256, 256, 256], [box_head_dim], norm_layer=nn.BatchNorm2d
        )
    else:
        rpn_head = RPNHead(fpn_channels, num_anchors)
        box_head = TwoMLPHead(fpn_channels * 7 * 7, box_head_dim)
    mask_head = MaskRCNNHeads(
        fpn_channels, [mask_head_channels] * mask_head_convs, 1, norm_layer=nn.BatchNorm2d if v2 else None
    )
    maskiou_head = None
    if maskiou:
        maskiou_head = MaskIoUHead(
            num_classes,
            in_channels=fpn_channels,
            input_design=maskiou_design,
            conv_channels=maskiou_conv_channels,
            num_convs=maskiou_num_convs,
            fc_dim=maskiou_fc_dim,
        )
    model = MaskScoringRCNN(
        body,
        maskiou_head=maskiou_head,
        maskiou_options={
            "maskiou_target": maskiou_target,
            "maskiou_threshold": maskiou_threshold,
            "maskiou_loss_weight": maskiou_loss_weight,
            "maskiou_binarize_threshold": maskiou_binarize_threshold,
            "maskiou_detach": maskiou_detach,
        },
        num_classes=None,
        min_size=tuple(min_size) if isinstance(min_size, Sequence) else min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        rpn_head=rpn_head,
        rpn_batch_size_per_image=rpn_batch_size_per_image,
        rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        box_head=box_head,
        box_predictor=FastRCNNPredictor(box_head_dim, num_classes),
        box_batch_size_per_image=box_batch_size_per_image,
        box_positive_fraction=box_positive_fraction,
        box_score_thresh=box_score_thresh,
        box_nms_thresh=box_nms_thresh,
        box_detections_per_img=box_detections_per_img,
        mask_head=mask_head,
        mask_predictor=MaskRCNNPredictor(mask_head_channels, mask_head_channels, num_classes),
    )
    for path, kind in ((backbone_weights, "backbone"), (maskrcnn_weights, "maskrcnn"), (weights, "msr")):
        if path:
            load_weights(model, path, kind=kind, allow_class_mismatch=allow_class_mismatch)
    if freeze_except_maskiou:
        freeze_all_but_maskiou(model)
    return model
