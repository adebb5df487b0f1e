"""torchvision's RoIHeads with the MaskIoU branch of Mask Scoring R-CNN.

Training adds `loss_maskiou`, computed on the same positive RoIs as the mask loss. Inference adds, for
every image of the batch, `mask_ious` (predicted IoU of the predicted class) and
`mask_scores = scores * mask_ious`; the box `scores` are left unchanged. With no MaskIoU head this
class computes exactly what torchvision's RoIHeads computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops import MultiScaleRoIAlign

from msr.models.maskiou_head import MaskIoUHead
from msr.models.maskiou_loss import check_target_variant, maskiou_loss
from msr.models.maskiou_targets import (
    crop_masks_to_boxes,
    mask_area_ratios,
    maskiou_targets,
    present_class_targets,
)


class MaskScoringRoIHeads(RoIHeads):
    """RoIHeads plus an optional MaskIoU head; forward returns (detections, losses) like torchvision's."""

    def __init__(
        self,
        *args,
        maskiou_head: MaskIoUHead | None = None,
        maskiou_roi_pool: MultiScaleRoIAlign | None = None,
        maskiou_target: str = "target_class",
        maskiou_threshold: float = 0.0,
        maskiou_loss_weight: float = 1.0,
        maskiou_binarize_threshold: float = 0.5,
        maskiou_detach: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        check_target_variant(maskiou_target)
        self.maskiou_head = maskiou_head
        # Only the concat_28 design needs its own (28x28) pooler; the others share the mask branch's.
        self.maskiou_roi_pool = maskiou_roi_pool
        self.maskiou_target = maskiou_target
        self.maskiou_threshold = maskiou_threshold
        self.maskiou_loss_weight = maskiou_loss_weight
        self.maskiou_binarize_threshold = maskiou_binarize_threshold
        self.maskiou_detach = maskiou_detach

    @classmethod
    def from_roi_heads(cls, roi_heads: RoIHeads, **maskiou_kwargs) -> MaskScoringRoIHeads:
        """Return a MaskScoringRoIHeads that shares every module and setting of torchvision's `roi_heads`."""
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
            **maskiou_kwargs,
        )

    @property
    def has_maskiou(self) -> bool:
        """True when the MaskIoU branch is active."""
        return self.maskiou_head is not None and self.has_mask()

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
        if targets is not None:
            for t in targets:
                if t["boxes"].dtype not in (torch.float, torch.double, torch.half, torch.bfloat16):
                    raise TypeError(f"target boxes must be of float type, got {t['boxes'].dtype}")
                if t["labels"].dtype != torch.int64:
                    raise TypeError(f"target labels must be of int64 type, got {t['labels'].dtype}")

        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(
                proposals, targets
            )
        box_features = self.box_roi_pool(features, proposals, image_shapes)
        box_features = self.box_head(box_features)
        class_logits, box_regression = self.box_predictor(box_features)

        results: list[dict[str, torch.Tensor]] = []
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            loss_classifier, loss_box_reg = fastrcnn_loss(
                class_logits, box_regression, labels, regression_targets
            )
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        else:
            boxes, scores, pred_labels = self.postprocess_detections(
                class_logits, box_regression, proposals, image_shapes
            )
            results = [{"boxes": b, "labels": l, "scores": s} for b, s, l in zip(boxes, scores, pred_labels)]

        if not self.has_mask():
            return results, losses
        if self.training:
            losses.update(self._mask_losses(features, proposals, image_shapes, targets, matched_idxs, labels))
        else:
            self._mask_inference(features, image_shapes, results)
        return results, losses

    # ----------------------------------------------------------------------------------------------
    def _mask_branch(
        self,
        features: dict[str, torch.Tensor],
        boxes: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (pooled RoI features [N, F, 14, 14], mask logits [N, C, 28, 28]) for the boxes."""
        roi_features = self.mask_roi_pool(features, boxes, image_shapes)
        mask_logits = self.mask_predictor(self.mask_head(roi_features))
        return roi_features, mask_logits

    def _maskiou_forward(
        self,
        features: dict[str, torch.Tensor],
        boxes: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        roi_features: torch.Tensor,
        mask_probs: torch.Tensor,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """Return the MaskIoU head's [N, C] predictions for the RoIs."""
        if self.maskiou_roi_pool is not None:
            roi_features = self.maskiou_roi_pool(features, boxes, image_shapes)
        if self.maskiou_detach:
            roi_features, mask_probs = roi_features.detach(), mask_probs.detach()
        return self.maskiou_head(roi_features, mask_probs, labels)

    def _mask_losses(self, features, proposals, image_shapes, targets, matched_idxs, labels):
        """Return {"loss_mask"} (torchvision's exact loss) and, with a MaskIoU head, {"loss_maskiou"}."""
        pos_proposals, pos_matched, pos_labels = [], [], []
        for props, idxs, labs, target in zip(proposals, matched_idxs, labels, targets):
            pos = torch.where(labs > 0)[0]
            pos_proposals.append(props[pos])
            pos_matched.append(idxs[pos])
            pos_labels.append(target["labels"][idxs[pos]])
        roi_features, mask_logits = self._mask_branch(features, pos_proposals, image_shapes)
        size = mask_logits.shape[-1]
        mask_targets = torch.cat(
            [
                crop_masks_to_boxes(t["masks"], p, i, size)
                for t, p, i in zip(targets, pos_proposals, pos_matched)
            ]
        )
        gt_labels = torch.cat(pos_labels)
        losses: dict[str, torch.Tensor] = {}
        if mask_targets.numel() == 0:
            losses["loss_mask"] = mask_logits.sum() * 0
        else:
            rows = torch.arange(gt_labels.shape[0], device=gt_labels.device)
            losses["loss_mask"] = F.binary_cross_entropy_with_logits(
                mask_logits[rows, gt_labels], mask_targets
            )
        if not self.has_maskiou:
            return losses

        mask_probs = mask_logits.sigmoid()  # [P, C, 28, 28]
        pred_ious = self._maskiou_forward(
            features, pos_proposals, image_shapes, roi_features, mask_probs, gt_labels
        )
        with torch.no_grad():
            ratios = torch.cat(
                [mask_area_ratios(t["masks"], p, i) for t, p, i in zip(targets, pos_proposals, pos_matched)]
            )
            rows = torch.arange(gt_labels.shape[0], device=gt_labels.device)
            target_ious = maskiou_targets(
                mask_probs[rows, gt_labels], mask_targets, ratios, self.maskiou_binarize_threshold
            )
            class_targets = class_present = None
            if self.maskiou_target == "present_classes":
                per_image = [
                    present_class_targets(probs, p, t["masks"], t["labels"], self.maskiou_binarize_threshold)
                    for probs, p, t in zip(
                        mask_probs.split([len(p) for p in pos_proposals]), pos_proposals, targets
                    )
                ]
                class_targets = torch.cat([ct for ct, _ in per_image])
                class_present = torch.cat([cp for _, cp in per_image])
        losses["loss_maskiou"] = maskiou_loss(
            pred_ious,
            target_ious,
            gt_labels,
            threshold=self.maskiou_threshold,
            loss_weight=self.maskiou_loss_weight,
            variant=self.maskiou_target,
            class_targets=class_targets,
            class_present=class_present,
        )
        return losses

    def _mask_inference(self, features, image_shapes, results) -> None:
        """Add "masks" [D, 1, 28, 28] and, with a MaskIoU head, "mask_ious" and "mask_scores" [D]."""
        boxes = [r["boxes"] for r in results]
        roi_features, mask_logits = self._mask_branch(features, boxes, image_shapes)
        labels = torch.cat([r["labels"] for r in results])
        rows = torch.arange(labels.shape[0], device=labels.device)
        mask_probs = mask_logits.sigmoid()
        counts = [len(b) for b in boxes]
        for r, probs in zip(results, mask_probs[rows, labels][:, None].split(counts)):
            r["masks"] = probs
        if not self.has_maskiou:
            return
        pred_ious = self._maskiou_forward(features, boxes, image_shapes, roi_features, mask_probs, labels)
        mask_ious = pred_ious[rows, labels]
        for r, ious in zip(results, mask_ious.split(counts)):
            r["mask_ious"] = ious
            # The paper's score: class confidence times predicted IoU. No clamping, no re-NMS.
            r["mask_scores"] = r["scores"] * ious
