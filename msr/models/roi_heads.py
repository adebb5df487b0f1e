"""torchvision's RoIHeads with the MaskIoU branch of Mask Scoring R-CNN.

torchvision's `RoIHeads.forward` runs unchanged: it samples the training RoIs, runs the box and mask
branches and computes their losses (`loss_classifier`, `loss_box_reg`, `loss_mask`) or post-processes the
detections. This subclass remembers the sampled RoIs (`select_training_samples`) and, while that forward
runs, captures the mask branch's pooled RoI features and mask logits with forward hooks. The MaskIoU branch
then runs on them. Training adds `loss_maskiou`, computed on the same positive RoIs as the mask loss.
Inference adds, for every image of the batch, `mask_ious` (predicted IoU of the predicted class) and
`mask_scores = scores * mask_ious`; the box `scores` are left unchanged. With no MaskIoU head the output is
exactly torchvision's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign

from msr.models.maskiou.branch import MaskIoUInputs, mask_scores, pool_for, predict_ious
from msr.models.maskiou.heads import MaskIoUHead
from msr.models.maskiou.loss import MaskIoULoss
from msr.models.maskiou.targets import MaskIoUSupervision, PositiveRoIs, TargetClassTargets

TargetStrategy = Callable[[torch.Tensor, PositiveRoIs], MaskIoUSupervision]


@contextmanager
def capture_outputs(modules: dict[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict that receives, under each name, the latest output of that module while the block runs."""
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(module: nn.Module, args, output: torch.Tensor) -> None:
            captured[name] = output

        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in modules.items()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


class MaskScoringRoIHeads(RoIHeads):
    """RoIHeads plus an optional MaskIoU head; forward returns (detections, losses) like torchvision's.

    maskiou_target maps (mask probabilities [P, C, M, M], PositiveRoIs) to a MaskIoUSupervision
    (default TargetClassTargets()); maskiou_loss maps (predictions [P, C], supervision) to the scalar
    loss (default MaskIoULoss()). maskiou_detach=True stops the MaskIoU gradient at the head's inputs.
    maskiou_roi_pool pools the head's RoI features when it needs another resolution than the mask branch.
    """

    def __init__(
        self,
        *args,
        maskiou_head: MaskIoUHead | None = None,
        maskiou_target: TargetStrategy | None = None,
        maskiou_loss: nn.Module | None = None,
        maskiou_detach: bool = False,
        maskiou_roi_pool: MultiScaleRoIAlign | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if maskiou_head is not None:
            maskiou_target = TargetClassTargets() if maskiou_target is None else maskiou_target
            maskiou_loss = MaskIoULoss() if maskiou_loss is None else maskiou_loss
            if maskiou_roi_pool is None and self.mask_roi_pool is not None:
                maskiou_roi_pool = pool_for(self.mask_roi_pool, maskiou_head.feature_size)
        self.maskiou_head = maskiou_head
        self.maskiou_target = maskiou_target
        self.maskiou_loss = maskiou_loss
        self.maskiou_detach = maskiou_detach
        self.maskiou_roi_pool = maskiou_roi_pool
        self._sampled: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] | None = None

    @classmethod
    def from_roi_heads(cls, roi_heads: RoIHeads, **maskiou_options: Any) -> MaskScoringRoIHeads:
        """Return a MaskScoringRoIHeads that shares every module and setting of torchvision's `roi_heads`.

        maskiou_options: the maskiou_* keyword arguments of the constructor (maskiou_head, maskiou_target,
        maskiou_loss, maskiou_detach, maskiou_roi_pool); none gives torchvision's behaviour exactly.
        """
        return cls(
            roi_heads.box_roi_pool,
            roi_heads.box_head,
            roi_heads.box_predictor,
            roi_heads.proposal_matcher.high_threshold,
            roi_heads.proposal_matcher.low_threshold,
            roi_heads.fg_bg_sampler.batch_size_per_image,
            roi_heads.fg_bg_sampler.positive_fraction,
            roi_heads.box_coder.weights,
            roi_heads.score_thresh,
            roi_heads.nms_thresh,
            roi_heads.detections_per_img,
            mask_roi_pool=roi_heads.mask_roi_pool,
            mask_head=roi_heads.mask_head,
            mask_predictor=roi_heads.mask_predictor,
            keypoint_roi_pool=roi_heads.keypoint_roi_pool,
            keypoint_head=roi_heads.keypoint_head,
            keypoint_predictor=roi_heads.keypoint_predictor,
            **maskiou_options,
        )

    @property
    def has_maskiou(self) -> bool:
        """True when the MaskIoU branch is active."""
        return self.maskiou_head is not None and self.has_mask()

    def select_training_samples(
        self, proposals: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Return torchvision's sampled (proposals, matched_idxs, labels, regression_targets).

        The first three are kept for the MaskIoU branch of the current forward.
        """
        sampled = super().select_training_samples(proposals, targets)
        self._sampled = sampled[:3]
        return sampled

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Return (per-image detections, losses); see the module docstring for the extra keys."""
        if self.has_keypoint():
            raise NotImplementedError("MaskScoringRoIHeads does not support keypoint heads")
        if not self.has_maskiou:
            return super().forward(features, proposals, image_shapes, targets)
        hooked = {"roi_features": self.mask_roi_pool, "mask_logits": self.mask_predictor}
        try:
            with capture_outputs(hooked) as captured:
                detections, losses = super().forward(features, proposals, image_shapes, targets)
            sampled = self._sampled
        finally:
            self._sampled = None
        mask_probs = captured["mask_logits"].sigmoid()  # [N, C, M, M]
        if self.training:
            rois = PositiveRoIs.from_samples(*sampled, targets, mask_size=mask_probs.shape[-1])
            pred_ious = self._predict_ious(
                features, rois.proposals, image_shapes, captured["roi_features"], mask_probs, rois.labels
            )
            supervision = self.maskiou_target(mask_probs, rois)
            losses["loss_maskiou"] = self.maskiou_loss(pred_ious, supervision)
        else:
            self._score_masks(features, image_shapes, detections, captured["roi_features"], mask_probs)
        return detections, losses

    def _predict_ious(
        self,
        features: dict[str, torch.Tensor],
        boxes: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        roi_features: torch.Tensor,
        mask_probs: torch.Tensor,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """Return the MaskIoU head's [N, C] predictions for the RoIs."""
        inputs = MaskIoUInputs(features, image_shapes, boxes, roi_features, mask_probs, labels)
        return predict_ious(self.maskiou_head, self.maskiou_roi_pool, self.maskiou_detach, inputs)

    def _score_masks(
        self,
        features: dict[str, torch.Tensor],
        image_shapes: list[tuple[int, int]],
        detections: list[dict[str, torch.Tensor]],
        roi_features: torch.Tensor,
        mask_probs: torch.Tensor,
    ) -> None:
        """Add "mask_ious" and "mask_scores" [D] to every image's detections."""
        boxes = [d["boxes"] for d in detections]
        labels = torch.cat([d["labels"] for d in detections])
        pred_ious = self._predict_ious(features, boxes, image_shapes, roi_features, mask_probs, labels)
        scores = torch.cat([d["scores"] for d in detections])
        ious, scores = mask_scores(scores, pred_ious, labels)
        counts = [len(b) for b in boxes]
        for d, image_ious, image_scores in zip(detections, ious.split(counts), scores.split(counts)):
            d["mask_ious"] = image_ious
            d["mask_scores"] = image_scores
