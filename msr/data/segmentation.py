"""COCO segmentation helpers on top of pycocotools: polygons and RLE (compressed or not) <-> masks."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
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
    """Return True when ``segmentation`` is COCO's polygon form (a list of coordinate lists)."""
    return isinstance(segmentation, list)


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict:
    """Return one compressed RLE for a COCO segmentation of an image of ``height`` x ``width``.

    Accepts polygons (a list of flat ``[x0, y0, x1, y1, ...]`` lists, merged into one mask),
    uncompressed RLE (``counts`` a list of ints) and compressed RLE (``counts`` a string or bytes).
    """
    if isinstance(segmentation, list):
        polygons = clean_polygons(segmentation)
        if not polygons:
            return mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def decode_masks(rles: Sequence[dict], height: int, width: int) -> np.ndarray:
    """Return the masks of ``rles`` stacked as an [N, H, W] uint8 array of 0/1."""
    if not rles:
        return np.zeros((0, height, width), dtype=np.uint8)
    with warnings.catch_warnings():
        # pycocotools calls np.array(copy=False) on its own buffer object: harmless under NumPy 2
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        masks = mask_utils.decode(list(rles))  # [H, W, N], Fortran order
    return np.ascontiguousarray(masks.transpose(2, 0, 1))


def mask_to_rle(mask: np.ndarray) -> dict:
    """Return a JSON-ready compressed RLE (``counts`` as str) of an [H, W] binary mask."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rle_area(rle: dict) -> int:
    """Return the number of foreground pixels of an RLE."""
    return int(mask_utils.area(rle))


def rle_bbox_xywh(rle: dict) -> list[float]:
    """Return the tight COCO box ``[x, y, w, h]`` (pixel edges) of an RLE."""
    return [float(v) for v in mask_utils.toBbox(rle)]
