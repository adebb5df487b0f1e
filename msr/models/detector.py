"""Mask Scoring R-CNN (or plain Mask R-CNN) from an already built backbone and a MaskIoU head factory."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from msr.models.maskiou.heads import MaskIoUHead
from msr.models.postprocess import MaskFormTransform
from msr.models.roi_align import ROI_ALIGN_IMPLS, SparseMultiScaleRoIAlign
from msr.models.roi_heads import MaskScoringRoIHeads, TargetStrategy

#: Head layouts: "v1" (torchvision's maskrcnn_resnet50_fpn) or "v2" (maskrcnn_resnet50_fpn_v2's heads).
LAYOUTS = ("v1", "v2")
#: FPN levels the RoI heads pool from (P2-P5); the RPN also sees P6, so anchor_sizes has one more entry.
NUM_POOLED_LEVELS = 4
#: Names of the FPN levels the RoI heads pool from.
POOLED_LEVELS = [str(level) for level in range(NUM_POOLED_LEVELS)]


class MaskScoringRCNN(MaskRCNN):
    """torchvision's MaskRCNN whose RoI heads carry the MaskIoU branch (state_dict-compatible with it).

    In eval mode forward returns, per image, torchvision's boxes/labels/scores/masks plus `mask_ious`
    and `mask_scores` when the MaskIoU head is present (within `msr.models.postprocess.box_mask_output`
    the masks come as BoxMasks, binary crops of their boxes); in train mode a dict of losses that adds
    `loss_maskiou`. maskiou_head and maskiou_options (MaskScoringRoIHeads' other maskiou_* keyword
    arguments) go to the RoI heads; the other arguments to torchvision's MaskRCNN.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int | None = None,
        maskiou_head: MaskIoUHead | None = None,
        maskiou_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, num_classes, **kwargs)
        self.roi_heads = MaskScoringRoIHeads.from_roi_heads(
            self.roi_heads, maskiou_head=maskiou_head, **(maskiou_options or {})
        )
        self.transform = MaskFormTransform.from_transform(self.transform)

    @property
    def has_maskiou(self) -> bool:
        """True for MS R-CNN, False for the Mask R-CNN baseline."""
        return self.roi_heads.has_maskiou


def build_detector(
    num_classes: int,
    backbone: BackboneWithFPN,
    maskiou_head: Callable[..., MaskIoUHead] | None = None,
    maskiou_target: TargetStrategy | None = None,
    maskiou_loss: nn.Module | None = None,
    maskiou_detach: bool = False,
    layout: str = "v1",
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
    roi_align: str = "sparse",
) -> MaskScoringRCNN:
    """Return a MaskScoringRCNN on `backbone` (plain Mask R-CNN through the same code when maskiou_head=None).

    num_classes counts the background. maskiou_head is a factory (a MaskIoUHead subclass or a
    functools.partial of one) called as maskiou_head(num_classes=..., in_channels=backbone.out_channels);
    maskiou_target and maskiou_loss default to TargetClassTargets() and MaskIoULoss(). layout="v2" gives
    the heavier heads of torchvision's maskrcnn_resnet50_fpn_v2 (BN in the heads, two-conv RPN head,
    four-conv box head); the FPN's norm is the backbone's (build_resnet_fpn_backbone(..., fpn_norm="bn")).
    The layers are created in a fixed order (anchors, RPN head, box head, mask head, MaskIoU head, box
    predictor, mask predictor), so a seed gives the same weights every time. roi_align="sparse" pools
    the RoIs of a CPU training pass as one sparse matrix product (msr.models.roi_align: torchvision's
    numbers up to float rounding, a multithreaded backward; inference and GPUs keep torchvision's
    kernel); "torchvision" uses torchvision's kernel everywhere.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if roi_align not in ROI_ALIGN_IMPLS:
        raise ValueError(f"unknown roi_align {roi_align!r}; choose one of {', '.join(ROI_ALIGN_IMPLS)}")
    if len(anchor_sizes) != NUM_POOLED_LEVELS + 1:
        raise ValueError(f"anchor_sizes needs one size per FPN level (5), got {list(anchor_sizes)}")
    v2 = layout == "v2"
    channels = backbone.out_channels
    anchors = AnchorGenerator(
        tuple((int(s),) for s in anchor_sizes), (tuple(float(a) for a in aspect_ratios),) * len(anchor_sizes)
    )
    num_anchors = anchors.num_anchors_per_location()[0]
    if v2:
        rpn_head = RPNHead(channels, num_anchors, conv_depth=2)
        box_head = FastRCNNConvFCHead(
            (channels, 7, 7), [256, 256, 256, 256], [box_head_dim], norm_layer=nn.BatchNorm2d
        )
    else:
        rpn_head = RPNHead(channels, num_anchors)
        box_head = TwoMLPHead(channels * 7 * 7, box_head_dim)
    mask_head = MaskRCNNHeads(
        channels, [mask_head_channels] * mask_head_convs, 1, norm_layer=nn.BatchNorm2d if v2 else None
    )
    pool = SparseMultiScaleRoIAlign if roi_align == "sparse" else MultiScaleRoIAlign
    head = None if maskiou_head is None else maskiou_head(num_classes=num_classes, in_channels=channels)
    maskiou_options = {
        "maskiou_target": maskiou_target,
        "maskiou_loss": maskiou_loss,
        "maskiou_detach": maskiou_detach,
    }
    return MaskScoringRCNN(
        backbone,
        maskiou_head=head,
        maskiou_options=maskiou_options,
        min_size=tuple(min_size) if isinstance(min_size, Sequence) else min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        rpn_head=rpn_head,
        rpn_batch_size_per_image=rpn_batch_size_per_image,
        rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        box_roi_pool=pool(POOLED_LEVELS, 7, sampling_ratio=2),
        box_head=box_head,
        box_predictor=FastRCNNPredictor(box_head_dim, num_classes),
        box_batch_size_per_image=box_batch_size_per_image,
        box_positive_fraction=box_positive_fraction,
        box_score_thresh=box_score_thresh,
        box_nms_thresh=box_nms_thresh,
        box_detections_per_img=box_detections_per_img,
        mask_roi_pool=pool(POOLED_LEVELS, 14, sampling_ratio=2),
        mask_head=mask_head,
        mask_predictor=MaskRCNNPredictor(mask_head_channels, mask_head_channels, num_classes),
    )
