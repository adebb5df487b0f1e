"""The MaskIoU branch: head designs (Table 4), IoU target, training targets (Table 5), loss (Table 6)."""

from msr.models.maskiou.heads import (
    INPUT_DESIGNS,
    AllMasksMaskIoUHead,
    Concat28MaskIoUHead,
    ConcatMaskIoUHead,
    MaskIoUHead,
    MaskOnlyMaskIoUHead,
    MultiplyMaskIoUHead,
    input_design,
    pool_masks,
)
from msr.models.maskiou.iou import (
    box_pixel_bounds,
    mask_area_ratios,
    maskiou_targets,
    pixels_inside_boxes,
    present_class_targets,
)
from msr.models.maskiou.loss import MaskIoULoss
from msr.models.maskiou.targets import (
    TARGET_VARIANTS,
    AllClassesOthersZeroTargets,
    AllClassesTargets,
    MaskIoUSupervision,
    MaskIoUTargets,
    PositiveRoIs,
    PresentClassesTargets,
    TargetClassTargets,
    target_variant,
)

__all__ = [
    "INPUT_DESIGNS",
    "TARGET_VARIANTS",
    "AllClassesOthersZeroTargets",
    "AllClassesTargets",
    "AllMasksMaskIoUHead",
    "Concat28MaskIoUHead",
    "ConcatMaskIoUHead",
    "MaskIoUHead",
    "MaskIoULoss",
    "MaskIoUSupervision",
    "MaskIoUTargets",
    "MaskOnlyMaskIoUHead",
    "MultiplyMaskIoUHead",
    "PositiveRoIs",
    "PresentClassesTargets",
    "TargetClassTargets",
    "box_pixel_bounds",
    "input_design",
    "mask_area_ratios",
    "maskiou_targets",
    "pixels_inside_boxes",
    "pool_masks",
    "present_class_targets",
    "target_variant",
]
