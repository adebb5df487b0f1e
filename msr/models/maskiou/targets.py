"""Which (RoI, class) outputs of the MaskIoU head are supervised, and with what (the paper's Table 5).

`PositiveRoIs` holds the mask branch's training RoIs of a batch. A target strategy maps the mask
probabilities of those RoIs to a `MaskIoUSupervision`: the target-class IoU of every RoI (`roi_iou`, on
which the loss applies its threshold tau) and the sparse (row, column, value) entries to regress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torchvision.models.detection.roi_heads import project_masks_on_boxes

from msr.models.maskiou.iou import mask_area_ratios, maskiou_targets, present_class_targets

#: (rows [K], cols [K], values [K]): supervised entries of the head's [P, C] output and their targets.
Entries = tuple[Tensor, Tensor, Tensor]


@dataclass
class PositiveRoIs:
    """The positive RoIs of a batch (box IoU >= the foreground threshold), as the mask branch sees them.

    proposals / matched_idxs: per image [P_i, 4] xyxy boxes and [P_i] index of the matched GT;
    labels: [P] GT class of every RoI, all images concatenated; gt_masks / gt_labels: per image the
    GT masks [G_i, H, W] and classes [G_i]; mask_targets: [P, M, M] the GT cropped to each RoI by RoIAlign
    (torchvision's mask-loss targets, values in [0, 1]). `derived` keeps what target strategies computed
    from these RoIs and one mask-probability tensor, so that the heads of a shared pass, which train on
    the same RoIs, compute it once (see `MaskIoUTargets.derived`).
    """

    proposals: list[Tensor]
    matched_idxs: list[Tensor]
    labels: Tensor
    gt_masks: list[Tensor]
    gt_labels: list[Tensor]
    mask_targets: Tensor
    derived: dict[Any, tuple[Tensor, Any]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_samples(
        cls,
        proposals: list[Tensor],
        matched_idxs: list[Tensor],
        labels: list[Tensor],
        targets: list[dict[str, Tensor]],
        mask_size: int,
    ) -> PositiveRoIs:
        """Return the positive RoIs of torchvision's sampled (proposals, matched_idxs, labels).

        The RoIs are selected exactly as torchvision's RoIHeads selects the mask branch's
        (`labels_i > 0`); mask_size is the side M of the mask logits.
        """
        pos_proposals, pos_matched, pos_labels = [], [], []
        for props, idxs, labs, target in zip(proposals, matched_idxs, labels, targets):
            pos = torch.where(labs > 0)[0]
            pos_proposals.append(props[pos])
            pos_matched.append(idxs[pos])
            pos_labels.append(target["labels"][idxs[pos]])
        gt_masks = [t["masks"] for t in targets]
        mask_targets = [
            project_masks_on_boxes(masks, boxes, idxs, mask_size)
            for masks, boxes, idxs in zip(gt_masks, pos_proposals, pos_matched)
        ]
        return cls(
            proposals=pos_proposals,
            matched_idxs=pos_matched,
            labels=torch.cat(pos_labels),
            gt_masks=gt_masks,
            gt_labels=[t["labels"] for t in targets],
            mask_targets=torch.cat(mask_targets),
        )

    def counts(self) -> list[int]:
        """Return the number of RoIs of every image."""
        return [len(p) for p in self.proposals]


@dataclass
class MaskIoUSupervision:
    """What the MaskIoU loss regresses.

    roi_iou: [P] float32 IoU target of every RoI's target class (tau is applied to it);
    rows, cols: [K] int64 the supervised (RoI, class) entries of the head's [P, C] output;
    values: [K] float32 their targets.
    """

    roi_iou: Tensor
    rows: Tensor
    cols: Tensor
    values: Tensor


class MaskIoUTargets:
    """Base of the target strategies: computes every RoI's target-class IoU; subclasses pick the entries."""

    def __init__(self, binarize_threshold: float = 0.5) -> None:
        self.binarize_threshold = binarize_threshold

    def __repr__(self) -> str:
        return f"{type(self).__name__}(binarize_threshold={self.binarize_threshold})"

    @torch.no_grad()
    def __call__(self, mask_probs: Tensor, rois: PositiveRoIs) -> MaskIoUSupervision:
        """Return the supervision of the RoIs; mask_probs: [P, C, M, M] probabilities of all classes."""
        roi_iou = self.roi_iou(mask_probs, rois)
        rows, cols, values = self.entries(mask_probs, rois, roi_iou)
        return MaskIoUSupervision(roi_iou=roi_iou, rows=rows, cols=cols, values=values)

    def derived(self, name: str, mask_probs: Tensor, rois: PositiveRoIs, compute: Any) -> Any:
        """Return `compute()`, computed once per (name, binarisation threshold) for these RoIs and this
        very `mask_probs` tensor (the heads of a shared pass ask for the same)."""
        key = (name, self.binarize_threshold)
        found = rois.derived.get(key)
        if found is not None and found[0] is mask_probs:
            return found[1]
        value = compute()
        rois.derived[key] = (mask_probs, value)
        return value

    def roi_iou(self, mask_probs: Tensor, rois: PositiveRoIs) -> Tensor:
        """Return [P] float32: the IoU of each RoI's target-class mask with its whole GT instance."""
        return self.derived("roi_iou", mask_probs, rois, lambda: self._roi_iou(mask_probs, rois))

    def _roi_iou(self, mask_probs: Tensor, rois: PositiveRoIs) -> Tensor:
        """Return `roi_iou`, computed."""
        ratios = torch.cat(
            [mask_area_ratios(m, p, i) for m, p, i in zip(rois.gt_masks, rois.proposals, rois.matched_idxs)]
        )
        rows = torch.arange(rois.labels.shape[0], device=rois.labels.device)
        target_probs = mask_probs[rows, rois.labels]  # [P, M, M]
        return maskiou_targets(target_probs, rois.mask_targets, ratios, self.binarize_threshold)

    def entries(self, mask_probs: Tensor, rois: PositiveRoIs, roi_iou: Tensor) -> Entries:
        """Return (rows [K], cols [K], values [K]): the supervised entries and their targets."""
        raise NotImplementedError(f"{type(self).__name__} must define entries")


class TargetClassTargets(MaskIoUTargets):
    """Table 5 (1), the default: only the target (GT) class's output, with the RoI's IoU."""

    def entries(self, mask_probs: Tensor, rois: PositiveRoIs, roi_iou: Tensor) -> Entries:
        """Return one entry per RoI: (n, labels[n], roi_iou[n])."""
        rows = torch.arange(rois.labels.shape[0], device=rois.labels.device)
        return rows, rois.labels, roi_iou


class PresentClassesTargets(MaskIoUTargets):
    """Table 5 (3): the classes present in the RoI (with their IoU) plus the target class.

    A class is present when its ground truth covers a pixel of the RoI's M x M grid; its target is the IoU
    of that class's predicted mask with the union of its GT instances, whole-instance corrected like the
    target class's (our reading of a detail the paper leaves open).
    """

    def class_targets(self, mask_probs: Tensor, rois: PositiveRoIs, roi_iou: Tensor) -> tuple[Tensor, Tensor]:
        """Return (targets [P, C] float32, present [P, C] bool); the target class counts as present.
        Callers read them, never write them (they are shared by the heads of a pass)."""
        return self.derived(
            "class_targets", mask_probs, rois, lambda: self._class_targets(mask_probs, rois, roi_iou)
        )

    def _class_targets(
        self, mask_probs: Tensor, rois: PositiveRoIs, roi_iou: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Return `class_targets`, computed."""
        per_image = [
            present_class_targets(probs, p, m, g, self.binarize_threshold)
            for probs, p, m, g in zip(
                mask_probs.split(rois.counts()), rois.proposals, rois.gt_masks, rois.gt_labels
            )
        ]
        dense = torch.cat([targets for targets, _ in per_image])  # [P, C]
        present = torch.cat([flags for _, flags in per_image])  # [P, C] bool
        index = torch.arange(rois.labels.shape[0], device=rois.labels.device)
        dense[index, rois.labels] = roi_iou
        present[index, rois.labels] = True
        return dense, present

    def entries(self, mask_probs: Tensor, rois: PositiveRoIs, roi_iou: Tensor) -> Entries:
        """Return the present and target-class entries of every RoI, row-major."""
        dense, present = self.class_targets(mask_probs, rois, roi_iou)
        rows, cols = present.nonzero(as_tuple=True)
        return rows, cols, dense[rows, cols]


class AllClassesTargets(PresentClassesTargets):
    """Table 5 (2): the IoU of every foreground class is learned: the classes present in the RoI get their
    IoU (as in PresentClassesTargets), the classes absent from it 0."""

    def entries(self, mask_probs: Tensor, rois: PositiveRoIs, roi_iou: Tensor) -> Entries:
        """Return C - 1 entries per RoI (classes 1..C-1), row-major."""
        dense, _ = self.class_targets(mask_probs, rois, roi_iou)
        rows, cols = _all_foreground(mask_probs.shape[0], mask_probs.shape[1], dense.device)
        return rows, cols, dense[rows, cols]


class AllClassesOthersZeroTargets(MaskIoUTargets):
    """Every foreground class is learned, with target 0 for every class but the target class, even for
    classes present in the RoI (msr's `all_classes_zero` before it implemented the paper's Table 5 (2))."""

    def entries(self, mask_probs: Tensor, rois: PositiveRoIs, roi_iou: Tensor) -> Entries:
        """Return C - 1 entries per RoI (classes 1..C-1), row-major."""
        rows, cols = _all_foreground(mask_probs.shape[0], mask_probs.shape[1], rois.labels.device)
        values = torch.where(cols == rois.labels[rows], roi_iou[rows], torch.zeros_like(roi_iou[rows]))
        return rows, cols, values


def _all_foreground(num_rois: int, num_classes: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Return (rows, cols) of every (RoI, foreground class) pair, row-major."""
    rows = torch.arange(num_rois, device=device).repeat_interleave(num_classes - 1)
    cols = torch.arange(1, num_classes, device=device).repeat(num_rois)
    return rows, cols


#: Training-target strategies by name (the paper's Table 5), for tests and benchmarks.
TARGET_VARIANTS: dict[str, type[MaskIoUTargets]] = {
    "target_class": TargetClassTargets,
    "all_classes": AllClassesTargets,
    "present_classes": PresentClassesTargets,
    "all_classes_others_zero": AllClassesOthersZeroTargets,
}


def target_variant(name: str) -> type[MaskIoUTargets]:
    """Return the strategy class of the named training target; a ValueError names the choices otherwise."""
    if name not in TARGET_VARIANTS:
        raise ValueError(
            f"unknown MaskIoU training target {name!r}; choose one of {', '.join(TARGET_VARIANTS)}"
        )
    return TARGET_VARIANTS[name]
