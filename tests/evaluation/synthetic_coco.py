"""Tiny hand-made COCO ground truth and model outputs for the evaluation tests (and the DDP worker).

Objects are axis-aligned rectangles, stored as RLE made from the very pixel masks the fake model
predicts, so a "perfect" prediction has IoU exactly 1 with its ground truth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from support.masks import rle_of

# non-contiguous COCO category ids, as in real COCO
CATEGORIES = ({"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 11, "name": "traffic light"})
CAT_IDS = [c["id"] for c in CATEGORIES]  # label k ↦ CAT_IDS[k - 1]


def rect_mask(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Return a [h, w] bool mask that is True on rows y0:y1 and columns x0:x1."""
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def annotation(ann_id: int, image_id: int, cat_id: int, h: int, w: int, box: tuple, crowd: int = 0) -> dict:
    """Return a COCO annotation of the rectangle `box` = (x0, y0, x1, y1) with an RLE segmentation."""
    x0, y0, x1, y1 = box
    m = rect_mask(h, w, x0, y0, x1, y1)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat_id,
        "segmentation": rle_of(m),
        "area": float(m.sum()),
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "iscrowd": crowd,
    }


def make_dataset(num_images: int = 5, h: int = 48, w: int = 64, seed: int = 0) -> dict[str, Any]:
    """Return a COCO dataset dict: `num_images` images with 2-3 rectangles each, plus one crowd region."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(num_images):
        image_id = 100 + 7 * i  # non-contiguous image ids
        images.append({"id": image_id, "height": h, "width": w, "file_name": f"{image_id}.jpg"})
        for _ in range(int(rng.integers(2, 4))):
            x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            bw, bh = int(rng.integers(6, 20)), int(rng.integers(6, 20))
            cat = CAT_IDS[int(rng.integers(0, len(CAT_IDS)))]
            anns.append(annotation(len(anns) + 1, image_id, cat, h, w, (x0, y0, x0 + bw, y0 + bh)))
    anns.append(annotation(len(anns) + 1, images[0]["id"], CAT_IDS[0], h, w, (0, 0, 10, 10), crowd=1))
    return {"images": images, "annotations": anns, "categories": [dict(c) for c in CATEGORIES]}


def output_of(dets: list[tuple[int, tuple, float, float]], h: int, w: int) -> dict[str, torch.Tensor]:
    """Return a Mask R-CNN-style output dict for dets = [(cat_id, (x0, y0, x1, y1), score, mask_iou)].

    Masks are probabilities: 0.9 inside the rectangle, 0.2 outside, so they binarise to the rectangle.
    """
    boxes = torch.tensor([d[1] for d in dets], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([CAT_IDS.index(d[0]) + 1 for d in dets], dtype=torch.int64)
    scores = torch.tensor([d[2] for d in dets], dtype=torch.float32)
    mask_ious = torch.tensor([d[3] for d in dets], dtype=torch.float32)
    masks = torch.full((len(dets), 1, h, w), 0.2)
    for k, (_, (x0, y0, x1, y1), _, _) in enumerate(dets):
        masks[k, 0, y0:y1, x0:x1] = 0.9
    return {
        "boxes": boxes,
        "labels": labels,
        "scores": scores,
        "masks": masks,
        "mask_ious": mask_ious,
        "mask_scores": scores * mask_ious,
    }


def perfect_outputs(dataset: dict[str, Any]) -> dict[int, dict[str, torch.Tensor]]:
    """Return image id → output that predicts every non-crowd GT exactly (score 0.9, mask IoU 1)."""
    out = {}
    for img in dataset["images"]:
        dets = [
            (a["category_id"], _xyxy(a["bbox"]), 0.9, 1.0)
            for a in dataset["annotations"]
            if a["image_id"] == img["id"] and not a["iscrowd"]
        ]
        out[img["id"]] = output_of(dets, img["height"], img["width"])
    return out


def noisy_outputs(dataset: dict[str, Any], seed: int = 1) -> dict[int, dict[str, torch.Tensor]]:
    """Return image id → imperfect output: shifted GT boxes, random scores, and one false positive each."""
    rng = np.random.default_rng(seed)
    out = {}
    for img in dataset["images"]:
        h, w = img["height"], img["width"]
        dets = []
        for a in dataset["annotations"]:
            if a["image_id"] != img["id"] or a["iscrowd"]:
                continue
            x0, y0, x1, y1 = _xyxy(a["bbox"])
            dx, dy = (int(v) for v in rng.integers(-3, 4, size=2))
            box = (max(x0 + dx, 0), max(y0 + dy, 0), min(x1 + dx, w), min(y1 + dy, h))
            dets.append((a["category_id"], box, float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.3, 1.0))))
        fp_cat = CAT_IDS[int(rng.integers(0, len(CAT_IDS)))]
        dets.append((fp_cat, (w - 12, h - 12, w - 2, h - 2), float(rng.uniform(0.3, 1.0)), 0.5))
        out[img["id"]] = output_of(dets, h, w)
    return out


def _xyxy(bbox: list) -> tuple[int, int, int, int]:
    """Return the integer xyxy corners of a COCO xywh box."""
    x, y, bw, bh = (int(v) for v in bbox)
    return x, y, x + bw, y + bh
