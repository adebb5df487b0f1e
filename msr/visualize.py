"""Overlay pictures of detections and ground truth: masks, boxes, class, box score and mask score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

#: Distinct colours, cycled by label so one class keeps one colour across pictures.
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
)  # fmt: skip


def class_captions(labels: Sequence[int], class_names: Sequence[str] | None) -> list[str]:
    """Return the class name of each label (the label number when it has no name)."""
    known = len(class_names) if class_names else 0
    return [class_names[label] if 0 <= label < known else str(label) for label in labels]


def detection_captions(
    labels: Sequence[int],
    scores: Sequence[float],
    class_names: Sequence[str] | None,
    mask_scores: Sequence[float] | None = None,
) -> list[str]:
    """Return one caption per detection: `<class> box=<score> mask=<mask score>` (mask part if known)."""
    captions = []
    for i, (name, score) in enumerate(zip(class_captions(labels, class_names), scores)):
        text = f"{name} box={score:.2f}"
        if mask_scores is not None:
            text += f" mask={mask_scores[i]:.2f}"
        captions.append(text)
    return captions


def draw_instances(
    image: np.ndarray | torch.Tensor,
    boxes: torch.Tensor,
    masks: torch.Tensor | None,
    labels: Sequence[int],
    captions: Sequence[str] | None = None,
    alpha: float = 0.45,
) -> np.ndarray:
    """Return an [H, W, 3] uint8 picture of `image` with the instances' masks and boxes drawn on it.

    `image`: [H, W, 3] uint8 array or [3, H, W] tensor (uint8, or float in [0, 1]); `boxes` [N, 4] xyxy
    pixels; `masks` [N, H, W] or [N, 1, H, W] bool or probabilities (thresholded at 0.5).
    """
    if isinstance(image, np.ndarray):
        canvas = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    else:
        canvas = image.detach().cpu()
        if canvas.is_floating_point():
            canvas = (canvas.clamp(0, 1) * 255).round()
    canvas = canvas.to(torch.uint8)
    colors = [PALETTE[int(label) % len(PALETTE)] for label in labels]
    if masks is not None and len(labels):
        binary = masks.detach().cpu()
        binary = binary[:, 0] if binary.ndim == 4 else binary
        binary = binary if binary.dtype == torch.bool else binary >= 0.5
        canvas = draw_segmentation_masks(canvas, binary, alpha=alpha, colors=colors)
    if len(labels):
        canvas = draw_bounding_boxes(
            canvas, boxes.detach().cpu().float(), labels=list(captions) if captions else None, colors=colors
        )
    return canvas.permute(1, 2, 0).numpy()


def draw_prediction(
    image: np.ndarray | torch.Tensor,
    output: Mapping[str, torch.Tensor],
    class_names: Sequence[str] | None,
    score_thresh: float = 0.5,
) -> np.ndarray:
    """Return the picture with the detections of `output` whose box score is >= `score_thresh`."""
    keep = output["scores"] >= score_thresh
    mask_scores = output.get("mask_scores")
    labels = output["labels"][keep].tolist()
    captions = detection_captions(
        labels,
        output["scores"][keep].tolist(),
        class_names,
        mask_scores[keep].tolist() if mask_scores is not None else None,
    )
    masks = output["masks"][keep] if "masks" in output else None
    return draw_instances(image, output["boxes"][keep], masks, labels, captions)
