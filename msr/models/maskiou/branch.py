"""A MaskIoU branch on its own: head, training target, loss and gradient stop, run on given RoI inputs.

MaskScoringRoIHeads carries one branch inside a detector. The head-only protocol trains several on one
frozen trunk: each `MaskIoUBranch` takes the trunk's `MaskIoUInputs` of a batch (msr.models.frozen_trunk)
and returns its loss (training) or its predicted IoU of every detection (inference), computed exactly as
the detector would compute them (`predict_ious` is shared with MaskScoringRoIHeads).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.ops import MultiScaleRoIAlign

from msr.models.maskiou.heads import MaskIoUHead
from msr.models.maskiou.loss import MaskIoULoss
from msr.models.maskiou.targets import MaskIoUSupervision, PositiveRoIs, TargetClassTargets


@dataclass
class MaskIoUInputs:
    """What the MaskIoU branch of a batch reads from the rest of the detector.

    features: the FPN levels; image_shapes: the (resized) picture sizes; boxes: per picture the RoIs
    (training: the positive proposals; inference: the detections), xyxy in the resized frame;
    roi_features: [N, F, 14, 14] the mask branch's pooled features; mask_probs: [N, C, M, M] sigmoid
    mask probabilities; labels: [N] the class whose mask is used (GT class in training, predicted class
    at inference); positives: the training RoIs with their ground truth (None at inference).
    """

    features: dict[str, Tensor]
    image_shapes: list[tuple[int, int]]
    boxes: list[Tensor]
    roi_features: Tensor
    mask_probs: Tensor
    labels: Tensor
    positives: PositiveRoIs | None = None


def pool_for(mask_roi_pool: MultiScaleRoIAlign | None, size: int) -> MultiScaleRoIAlign | None:
    """Return a RoIAlign like the mask branch's at `size` x `size`; None if that one has this size."""
    if mask_roi_pool is None or tuple(mask_roi_pool.output_size) == (size, size):
        return None
    return type(mask_roi_pool)(mask_roi_pool.featmap_names, size, sampling_ratio=mask_roi_pool.sampling_ratio)


def predict_ious(
    head: MaskIoUHead, roi_pool: MultiScaleRoIAlign | None, detach: bool, inputs: MaskIoUInputs
) -> Tensor:
    """Return the head's [N, C] predicted IoUs of the RoIs of `inputs`.

    `roi_pool` pools the head's own RoI features when it needs another resolution than the mask branch's;
    `detach` stops the gradient at the head's inputs.
    """
    roi_features, mask_probs = inputs.roi_features, inputs.mask_probs
    if roi_pool is not None:
        roi_features = roi_pool(inputs.features, inputs.boxes, inputs.image_shapes)
    if detach:
        roi_features, mask_probs = roi_features.detach(), mask_probs.detach()
    return head(roi_features, mask_probs, inputs.labels)


def mask_scores(scores: Tensor, pred_ious: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Return (mask_ious [D], mask_scores [D]): each detection's predicted IoU of its predicted class, and
    the paper's mask score, class score times that IoU (no clamping)."""
    rows = torch.arange(labels.shape[0], device=labels.device)
    ious = pred_ious[rows, labels]
    return ious, scores * ious


class MaskIoUBranch(nn.Module):
    """One MaskIoU head with its training target, loss and gradient stop (the model's `maskiou_*` parts).

    `mask_roi_pool` is the detector's mask RoIAlign: a head of another feature size pools its own.
    State: the head's parameters only (`head.*`), the same tensors as `roi_heads.maskiou_head.*`.
    """

    def __init__(
        self,
        head: MaskIoUHead,
        mask_roi_pool: MultiScaleRoIAlign | None,
        target: object | None = None,
        loss: nn.Module | None = None,
        detach: bool = False,
    ) -> None:
        super().__init__()
        self.head = head
        self.target = TargetClassTargets() if target is None else target
        self.loss = MaskIoULoss() if loss is None else loss
        self.detach = bool(detach)
        self.roi_pool = pool_for(mask_roi_pool, head.feature_size)

    def predict(self, inputs: MaskIoUInputs) -> Tensor:
        """Return the [N, C] predicted IoUs of the RoIs of `inputs`."""
        return predict_ious(self.head, self.roi_pool, self.detach, inputs)

    def training_loss(self, inputs: MaskIoUInputs) -> Tensor:
        """Return the scalar MaskIoU loss of a training batch's positive RoIs."""
        if inputs.positives is None:
            raise ValueError("the MaskIoU loss needs the training RoIs' ground truth (inputs.positives)")
        supervision: MaskIoUSupervision = self.target(inputs.mask_probs, inputs.positives)
        return self.loss(self.predict(inputs), supervision)
