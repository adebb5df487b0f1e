"""The IoU target of the MaskIoU head: pure tensor functions, no modules.

The target of an RoI is the IoU between its binarised predicted mask and the ground truth of the whole
instance. On the 28x28 grid only the part of the GT inside the proposal is visible, so the GT area is
rescaled by the fraction of the instance's pixels that lie inside the proposal:

    gt_full = gt_in_roi.sum() / max(area_ratio, eps)
    iou     = overlap / max(pred_area + gt_full - overlap, 1)
"""

from __future__ import annotations

import torch
from torchvision.models.detection.roi_heads import project_masks_on_boxes

#: Floor of the area ratio, so that an instance almost entirely outside its proposal gets IoU ~ 0.
AREA_RATIO_EPS = 1e-6
#: A cell of a ground-truth crop (RoIAlign of a 0/1 mask) is foreground above this value; a cell of exactly
#: 0.5 (a sample halfway between a foreground and a background pixel) is background, for every target.
GT_FOREGROUND = 0.5


def box_pixel_bounds(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Return [N, 4] int64 (row0, row1, col0, col1): the pixel rows/cols whose centres lie in each box.

    Pixel (r, c) covers [c, c+1) x [r, r+1); it is inside box (x1, y1, x2, y2) when its centre
    (c + 0.5, r + 0.5) satisfies x1 <= c + 0.5 < x2 and y1 <= r + 0.5 < y2. Bounds are half-open.
    """
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    col0 = torch.ceil(x1 - 0.5).clamp(0, width)
    col1 = torch.ceil(x2 - 0.5).clamp(0, width)
    row0 = torch.ceil(y1 - 0.5).clamp(0, height)
    row1 = torch.ceil(y2 - 0.5).clamp(0, height)
    col1 = torch.maximum(col1, col0)
    row1 = torch.maximum(row1, row0)
    return torch.stack([row0, row1, col0, col1], dim=1).long()


def pixels_inside_boxes(masks: torch.Tensor, boxes: torch.Tensor, mask_idxs: torch.Tensor) -> torch.Tensor:
    """Return [N] float: the number of foreground pixels of masks[mask_idxs[n]] inside boxes[n].

    Uses a summed-area table per mask, so the cost does not depend on the number of boxes.
    masks: [G, H, W] (any dtype, > 0 is foreground); boxes: [N, 4] xyxy; mask_idxs: [N] int.
    """
    num_masks, height, width = masks.shape
    if boxes.shape[0] == 0 or num_masks == 0:
        return torch.zeros(boxes.shape[0], dtype=torch.float32, device=boxes.device)
    # int32 is exact up to 2**31 pixels per mask; [G, H+1, W+1] with a zero first row and column.
    table = torch.zeros((num_masks, height + 1, width + 1), dtype=torch.int32, device=masks.device)
    table[:, 1:, 1:] = (masks > 0).to(torch.int32).cumsum(1, dtype=torch.int32).cumsum(2, dtype=torch.int32)
    bounds = box_pixel_bounds(boxes, height, width)
    row0, row1, col0, col1 = bounds.unbind(dim=1)
    idx = mask_idxs.long()
    inside = table[idx, row1, col1] - table[idx, row0, col1] - table[idx, row1, col0] + table[idx, row0, col0]
    return inside.to(torch.float32)


def mask_area_ratios(
    gt_masks: torch.Tensor, proposals: torch.Tensor, matched_idxs: torch.Tensor
) -> torch.Tensor:
    """Return [N]: the fraction of each matched GT instance's pixels that lie inside its proposal box.

    gt_masks: [G, H, W] full-resolution GT masks (0/1); proposals: [N, 4] xyxy in the same pixel frame;
    matched_idxs: [N] index of the GT each proposal is matched to. An empty GT instance gives 0, not NaN.
    """
    inside = pixels_inside_boxes(gt_masks, proposals, matched_idxs)
    if gt_masks.shape[0] == 0:
        return inside
    totals = (gt_masks > 0).flatten(1).sum(dim=1).to(torch.float32)[matched_idxs.long()]
    return torch.where(totals > 0, inside / totals.clamp(min=1.0), torch.zeros_like(inside))


def maskiou_targets(
    mask_probs: torch.Tensor,
    gt_masks: torch.Tensor,
    area_ratios: torch.Tensor,
    threshold: float = 0.5,
) -> torch.Tensor:
    """Return [N] target IoUs between binarised predicted masks and the whole GT instances.

    mask_probs: [N, M, M] sigmoid probabilities of the target class (NOT logits: binarising logits at
    0.5 would mean probability > 0.62); gt_masks: [N, M, M] GT cropped to the RoI and resized to M,
    0/1; area_ratios: [N] fraction of each GT instance inside its RoI (see mask_area_ratios).
    """
    pred = mask_probs > threshold
    gt = gt_masks > GT_FOREGROUND
    overlap = (pred & gt).flatten(1).sum(dim=1).to(torch.float32)
    pred_area = pred.flatten(1).sum(dim=1).to(torch.float32)
    gt_in_roi = gt.flatten(1).sum(dim=1).to(torch.float32)
    gt_full = gt_in_roi / area_ratios.to(torch.float32).clamp(min=AREA_RATIO_EPS)
    union = (pred_area + gt_full - overlap).clamp(min=1.0)
    return overlap / union


def present_class_targets(
    mask_probs: torch.Tensor,
    proposals: torch.Tensor,
    gt_masks: torch.Tensor,
    gt_labels: torch.Tensor,
    threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (targets [N, C], present [N, C] bool) for the paper's Table 5 variant (3), one image.

    A class is present in an RoI when the union of that class's GT masks has a pixel inside the RoI
    (after cropping to the 28x28 grid). Its target is the IoU between the predicted mask of that class
    and the class's GT union, with the same whole-instance correction as the default target.
    mask_probs: [N, C, M, M] probabilities of all classes; proposals: [N, 4]; gt_masks: [G, H, W];
    gt_labels: [G].
    """
    num_rois, num_classes, size = mask_probs.shape[0], mask_probs.shape[1], mask_probs.shape[-1]
    targets = mask_probs.new_zeros((num_rois, num_classes), dtype=torch.float32)
    present = torch.zeros((num_rois, num_classes), dtype=torch.bool, device=mask_probs.device)
    if num_rois == 0 or gt_labels.numel() == 0:
        return targets, present
    classes = torch.unique(gt_labels)  # [K]
    one_hot = (gt_labels[:, None] == classes[None, :]).to(torch.float32)  # [G, K]
    unions = (torch.einsum("gk,ghw->khw", one_hot, (gt_masks > 0).to(torch.float32)) > 0).to(torch.uint8)
    num_present = classes.shape[0]
    roi_idx = torch.arange(num_rois, device=proposals.device).repeat_interleave(num_present)
    cls_idx = torch.arange(num_present, device=proposals.device).repeat(num_rois)
    crops = project_masks_on_boxes(unions, proposals[roi_idx], cls_idx, size)  # [N*K, M, M]
    ratios = mask_area_ratios(unions, proposals[roi_idx], cls_idx)
    probs = mask_probs[roi_idx, classes[cls_idx]]  # [N*K, M, M]
    ious = maskiou_targets(probs, crops, ratios, threshold)
    is_present = (crops > GT_FOREGROUND).flatten(1).any(dim=1)
    targets[roi_idx, classes[cls_idx]] = ious
    present[roi_idx, classes[cls_idx]] = is_present
    return targets, present
