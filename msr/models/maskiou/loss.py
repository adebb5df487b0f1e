"""The MaskIoU loss: L2 regression of the predicted mask IoU, with the threshold tau of Table 6."""

from __future__ import annotations

import torch
from torch import nn

from msr.models.maskiou.targets import MaskIoUSupervision

#: What the summed squared errors of the kept RoIs are divided by (`MaskIoULoss.normalizer`).
NORMALIZERS = ("kept", "positives")


class MaskIoULoss(nn.Module):
    """`loss_weight * sum(0.5 * (p - t)^2) / N`, N the number of RoIs whose target-class IoU is > threshold.

    RoIs whose target-class IoU is <= threshold (tau) are not trained on; the sum runs over the supervised
    entries of the kept RoIs, so with the default target strategy (one entry per RoI) this is the mean of
    0.5 * (p - t)^2 over the kept RoIs (`normalizer="kept"`, the official code's, where tau is 0).
    `normalizer="positives"` divides by every positive RoI of the batch instead (the RoIs the mask loss
    averages over), so the loss's scale does not depend on tau: at a high tau early in training, when one
    RoI in a batch passes it, its error is not blown up to the weight of the whole batch. The two agree
    whenever every positive RoI's IoU is above tau (at tau = 0: every mask overlaps its ground truth).
    The loss is computed in float32 whatever the autocast dtype. It has no parameters.
    """

    def __init__(self, loss_weight: float = 1.0, threshold: float = 0.0, normalizer: str = "kept") -> None:
        super().__init__()
        if normalizer not in NORMALIZERS:
            raise ValueError(f"normalizer must be one of {', '.join(NORMALIZERS)}, got {normalizer!r}")
        self.loss_weight = loss_weight
        self.threshold = threshold
        self.normalizer = normalizer

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}, threshold={self.threshold}, normalizer={self.normalizer}"

    def forward(self, pred_ious: torch.Tensor, supervision: MaskIoUSupervision) -> torch.Tensor:
        """Return the scalar loss; pred_ious: [P, C] head outputs. 0 (with a graph) when no RoI is kept."""
        pred = pred_ious.float()
        keep = supervision.roi_iou > self.threshold
        num_kept = int(keep.sum())
        if num_kept == 0:
            return pred.sum() * 0.0
        kept = keep[supervision.rows]
        err = pred[supervision.rows[kept], supervision.cols[kept]] - supervision.values[kept]
        total = (0.5 * err**2).sum()
        divisor = num_kept if self.normalizer == "kept" else len(supervision.roi_iou)
        return self.loss_weight * total / divisor
