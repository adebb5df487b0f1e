"""COCO segmentations on top of pycocotools: the one path from polygons, RLE and masks to compressed RLE.

- `segmentation_to_rle`: a ground-truth annotation's `segmentation` (polygons, uncompressed RLE or
  compressed RLE) → one compressed RLE, through pycocotools' `frPyObjects` / `merge`.
- `encode_masks`: binary masks [N, H, W] (NumPy or torch) → JSON-ready compressed RLE dicts, through
  pycocotools' `encode` on one Fortran-ordered [H, W, N] array.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def clean_polygons(polygons: Sequence[Sequence[float]]) -> list[list[float]]:
    """Return the polygons that can be rasterised: an even number >= 6 of finite coordinates each."""
    kept = []
    for polygon in polygons:
        coords = [float(c) for c in polygon]
        if len(coords) >= 6 and len(coords) % 2 == 0 and all(math.isfinite(c) for c in coords):
            kept.append(coords)
    return kept


def is_polygon_segmentation(segmentation: Any) -> bool:
    """Return True when `segmentation` is COCO's polygon form (a list of coordinate lists)."""
    return isinstance(segmentation, (list, tuple))


def is_rle_segmentation(segmentation: Any) -> bool:
    """Return True when `segmentation` is an RLE dict (with `size` and `counts`, compressed or not)."""
    return isinstance(segmentation, Mapping) and "counts" in segmentation and "size" in segmentation


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict:
    """Return one compressed RLE for a COCO segmentation of an image of `height` x `width`.

    Accepts polygons (a list of flat `[x0, y0, x1, y1, ...]` lists, merged into one mask; polygons
    that cannot be rasterised are dropped, and none left gives an empty mask), uncompressed RLE
    (`counts` a list of ints) and compressed RLE (`counts` a string or bytes, returned as is).

    Raises:
        ValueError: when `segmentation` is none of these forms.
    """
    if is_polygon_segmentation(segmentation):
        polygons = clean_polygons(segmentation)
        if not polygons:
            return mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if is_rle_segmentation(segmentation):
        if isinstance(segmentation["counts"], list):
            return mask_utils.frPyObjects(dict(segmentation), height, width)
        return segmentation
    raise ValueError(f"not a COCO segmentation (polygons or RLE): {type(segmentation).__name__}")


def encode_masks(masks: Any) -> list[dict[str, Any]]:
    """Return one JSON-ready compressed RLE (`counts` as str) per binary mask of `masks` [N, H, W].

    `masks`: a NumPy array or a torch tensor (any device) of bool or 0/1 values. All N masks go to
    pycocotools in one Fortran-ordered [H, W, N] uint8 array; a tensor is converted without an
    extra host-side copy.

    Raises:
        ValueError: when `masks` is not 3-dimensional.
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {tuple(masks.shape)}")
    if masks.shape[0] == 0:
        return []
    if isinstance(masks, np.ndarray):
        # [N, W, H] C-contiguous == [H, W, N] in Fortran order once transposed
        fortran = np.ascontiguousarray(masks.astype(np.uint8).transpose(0, 2, 1)).transpose(2, 1, 0)
    else:  # a torch tensor: the same layout trick before the copy to the host
        import torch

        fortran = masks.to(torch.uint8).transpose(1, 2).contiguous().cpu().numpy().transpose(2, 1, 0)
    rles = mask_utils.encode(fortran)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def mask_to_rle(mask: np.ndarray) -> dict:
    """Return the JSON-ready compressed RLE (`counts` as str) of one [H, W] binary mask."""
    return encode_masks(mask[None])[0]


def decode_masks(rles: Sequence[dict], height: int, width: int) -> np.ndarray:
    """Return the masks of `rles` stacked as an [N, H, W] uint8 array of 0/1."""
    if not rles:
        return np.zeros((0, height, width), dtype=np.uint8)
    with warnings.catch_warnings():
        # pycocotools calls np.array(copy=False) on its own buffer object: harmless under NumPy 2
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        masks = mask_utils.decode(list(rles))  # [H, W, N], Fortran order
    return np.ascontiguousarray(masks.transpose(2, 0, 1))


def rle_area(rle: dict) -> int:
    """Return the number of foreground pixels of an RLE."""
    return int(mask_utils.area(rle))


def rle_bbox_xywh(rle: dict) -> list[float]:
    """Return the tight COCO box `[x, y, w, h]` (pixel edges) of an RLE."""
    return [float(v) for v in mask_utils.toBbox(rle)]
