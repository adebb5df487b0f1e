"""Mask Scoring R-CNN as plain PyTorch/torchvision modules (no Lightning, Hydra or wandb here)."""

from msr.models.backbones import BACKBONES, NORMS, build_resnet_fpn_backbone
from msr.models.builder import LAYOUTS, MaskScoringRCNN, build_model
from msr.models.maskiou_head import INPUT_DESIGNS, MaskIoUHead
from msr.models.maskiou_loss import TARGET_VARIANTS, maskiou_loss
from msr.models.maskiou_targets import (
    crop_masks_to_boxes,
    mask_area_ratios,
    maskiou_targets,
    pixels_inside_boxes,
    present_class_targets,
)
from msr.models.roi_heads import MaskScoringRoIHeads
from msr.models.weights import WeightsError, freeze_all_but_maskiou, load_weights, read_state_dict

__all__ = [
    "BACKBONES",
    "INPUT_DESIGNS",
    "LAYOUTS",
    "NORMS",
    "TARGET_VARIANTS",
    "MaskIoUHead",
    "MaskScoringRCNN",
    "MaskScoringRoIHeads",
    "WeightsError",
    "build_model",
    "build_resnet_fpn_backbone",
    "crop_masks_to_boxes",
    "freeze_all_but_maskiou",
    "load_weights",
    "mask_area_ratios",
    "maskiou_loss",
    "maskiou_targets",
    "pixels_inside_boxes",
    "present_class_targets",
    "read_state_dict",
]
