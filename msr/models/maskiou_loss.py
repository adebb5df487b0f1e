"""The MaskIoU loss: L2 regression of the predicted mask IoU, with the paper's Table 5 variants."""

from __future__ import annotations

import torch

#: Training-target variants of the paper's Table 5.
#: target_class      - supervise only the target (GT) class's output (default, best)
#: all_classes_zero  - supervise every foreground class; 0 for classes other than the target
#: present_classes   - supervise every class whose GT appears in the RoI
TARGET_VARIANTS = ("target_class", "all_classes_zero", "present_classes")


def check_target_variant(variant: str) -> None:
    """Raise a ValueError naming the choices if `variant` is not a known training target."""
    if variant not in TARGET_VARIANTS:
        raise ValueError(
            f"unknown MaskIoU training target {variant!r}; choose one of {', '.join(TARGET_VARIANTS)}"
        )


def maskiou_loss(
    pred_ious: torch.Tensor,
    target_ious: torch.Tensor,
    labels: torch.Tensor,
    *,
    threshold: float = 0.0,
    loss_weight: float = 1.0,
    variant: str = "target_class",
    class_targets: torch.Tensor | None = None,
    class_present: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the scalar loss `weight * sum(0.5 * (p - t)^2) / number of RoIs with target > threshold`.

    pred_ious: [N, C] head outputs; target_ious: [N] target-class IoU; labels: [N] target class.
    RoIs whose target-class IoU is <= threshold (tau, Table 6) are not trained on. With the default
    variant the sum has one term per RoI, so this is the mean of 0.5 * (p - t)^2 over kept RoIs.
    `all_classes_zero` adds one term per foreground class (target 0 except the target class);
    `present_classes` adds one term per class present in the RoI, with targets and presence given by
    class_targets / class_present ([N, C], see present_class_targets).
    """
    check_target_variant(variant)
    keep = target_ious > threshold
    num_kept = int(keep.sum())
    if num_kept == 0:
        return pred_ious.sum() * 0.0
    pred = pred_ious[keep]
    kept_labels = labels[keep]
    kept_targets = target_ious[keep].to(pred.dtype)
    rows = torch.arange(num_kept, device=pred.device)
    if variant == "target_class":
        err = pred[rows, kept_labels] - kept_targets
        total = (0.5 * err**2).sum()
    else:
        if variant == "all_classes_zero":
            dense = torch.zeros_like(pred)
            weights = torch.ones_like(pred)
            weights[:, 0] = 0.0  # background is not a class whose mask is scored
        else:
            if class_targets is None or class_present is None:
                raise ValueError("variant 'present_classes' needs class_targets and class_present")
            dense = class_targets[keep].to(pred.dtype).clone()
            weights = class_present[keep].to(pred.dtype).clone()
        dense[rows, kept_labels] = kept_targets
        weights[rows, kept_labels] = 1.0
        total = (0.5 * weights * (pred - dense) ** 2).sum()
    return loss_weight * total / num_kept
