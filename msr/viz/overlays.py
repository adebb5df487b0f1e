"""Overlay pictures of detections and ground truth (masks, boxes, class, box score and mask score, with
labels readable at any picture size: msr.viz.labels), the ground truth | prediction panels, and PNG files
written atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from msr.files import atomic_path
from msr.models.mask_paste import BoxMasks
from msr.viz.labels import caption_strip, draw_labels

#: Distinct colours, cycled by label so one class keeps one colour across pictures.
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
)


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
    masks: torch.Tensor | BoxMasks | None,
    labels: Sequence[int],
    captions: Sequence[str] | None = None,
    alpha: float = 0.45,
) -> np.ndarray:
    """Return an [H, W, 3] uint8 picture of `image` with the instances' masks and boxes drawn on it.

    `image`: [H, W, 3] uint8 array or [3, H, W] tensor (uint8, or float in [0, 1]); `boxes` [N, 4] xyxy
    pixels; `masks` [N, H, W] or [N, 1, H, W] bool or probabilities (thresholded at 0.5), or BoxMasks.
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
        if isinstance(masks, BoxMasks):  # crops placed in the picture; no resize, no float mask
            binary = masks.cpu().to_dense()
        else:
            binary = masks.detach().cpu()
            binary = binary[:, 0] if binary.ndim == 4 else binary
        binary = binary if binary.dtype == torch.bool else binary >= 0.5
        for mask, color in zip(binary, colors):  # one at a time: torchvision blacks out where masks overlap
            canvas = draw_segmentation_masks(canvas, mask[None], alpha=alpha, colors=[color])
    if not len(labels):
        return canvas.permute(1, 2, 0).numpy()
    boxes = boxes.detach().cpu().float()
    line = max(1, min(canvas.shape[-2:]) // 300)  # box lines as thick as the picture is large
    canvas = draw_bounding_boxes(canvas, boxes, colors=colors, width=line)
    picture = canvas.permute(1, 2, 0).numpy()
    if captions:
        picture = draw_labels(picture, boxes.tolist(), list(captions), colors)
    return picture


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


def side_by_side(
    left: np.ndarray, right: np.ndarray, gap: int = 4, titles: tuple[str, str] | None = None
) -> np.ndarray:
    """Return [H, W_left + gap + W_right, 3]: the two pictures next to each other on a white gap, each
    under its title when `titles` are given."""
    if titles is not None:
        left, right = caption_strip(left, titles[0]), caption_strip(right, titles[1])
    height = max(left.shape[0], right.shape[0])
    canvas = np.full((height, left.shape[1] + gap + right.shape[1], 3), 255, dtype=np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] + gap :] = right
    return canvas


def save_png(picture: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an [H, W, 3] uint8 array as a PNG atomically (temp file + rename); return the path."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(picture)).save(tmp, format="PNG")
    return Path(path)


def enlarge_image(image: torch.Tensor, factor: int) -> torch.Tensor:
    """Return the [C, H, W] image enlarged `factor` times by nearest neighbour (as float)."""
    if factor == 1:
        return image
    return F.interpolate(image[None].float(), scale_factor=factor, mode="nearest")[0]


def enlarge_instances(instances: dict, factor: int) -> dict:
    """Return a copy of `instances` for an image enlarged `factor` times: boxes scaled, masks enlarged.

    `boxes` [N, 4]; `masks` [N, H, W] or [N, 1, H, W], bool or probabilities (nearest neighbour), or
    BoxMasks;
    other entries are kept as they are.
    """
    out = dict(instances)
    out["boxes"] = instances["boxes"].as_subclass(torch.Tensor).float() * factor
    if isinstance(instances["masks"], BoxMasks):
        out["masks"] = instances["masks"].enlarge(factor)
        return out
    masks = instances["masks"].as_subclass(torch.Tensor)
    if factor > 1:
        height, width = masks.shape[-2] * factor, masks.shape[-1] * factor
        flat = masks.float().reshape(-1, 1, *masks.shape[-2:])
        flat = F.interpolate(flat, size=(height, width), mode="nearest") if flat.numel() else flat
        masks = flat.reshape(*masks.shape[:-2], height, width)
    out["masks"] = masks
    return out
