"""COCO RLE straight from box crops: the segm results of `BoxMasks` without a full-image array.

COCO's RLE runs down the columns of the [H, W] image (column-major), alternating 0-runs and 1-runs,
starting with a 0-run (possibly empty) and ending with the last run that holds a pixel. Outside its
region a mask is 0, so the runs of ones follow from the crop alone: a run inside a crop column starts
at `(x0 + column) * H + y0 + row`; a run that ends on the last row of the image and one that starts on
the first row of the next column are one run. The run lengths then go through pycocotools' own
compression, so the `counts` strings are those of `pycocotools.mask.encode` on the dense mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pycocotools import mask as mask_utils

if TYPE_CHECKING:  # torch loads with the first model output (a results file is read without it)
    from msr.models.mask_paste import BoxMasks


def encode_box_masks(masks: BoxMasks) -> list[dict[str, Any]]:
    """Return one JSON-ready compressed RLE (`size` [H, W], `counts` str) per mask of `masks`, equal to
    `msr.data.segmentation.encode_masks(masks.to_dense())`."""
    height, width = masks.image_size
    uncompressed = [
        {"size": [height, width], "counts": mask_counts(crop.numpy(), region, height, width)}
        for crop, region in zip(masks.cpu().crops(), masks.regions.tolist())
    ]
    if not uncompressed:
        return []
    rles = mask_utils.frPyObjects(uncompressed, height, width)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def mask_counts(crop: np.ndarray, region: list[int], height: int, width: int) -> list[int]:
    """Return the uncompressed COCO RLE counts of the [height, width] mask that is `crop` [h, w] (bool) at
    `region` (x0, y0, x1, y1) and 0 elsewhere."""
    x0, y0 = region[0], region[1]
    h, w = crop.shape
    total = height * width
    if crop.size == 0:
        return [total]
    padded = np.zeros((w, h + 2), dtype=bool)  # crop columns, a 0 above and below each
    padded[:, 1:-1] = crop.T
    changes = np.flatnonzero(padded[:, 1:] != padded[:, :-1])  # in pairs per column: run start, run end
    if changes.size == 0:
        return [total]
    column, row = np.divmod(changes, h + 1)
    edges = (x0 + column) * height + y0 + row  # column-major pixel index of each start and end
    starts, ends = edges[0::2], edges[1::2]
    joined = ends[:-1] == starts[1:]  # a run over the bottom of one column and the top of the next
    if joined.any():
        starts = np.concatenate([starts[:1], starts[1:][~joined]])
        ends = np.concatenate([ends[:-1][~joined], ends[-1:]])
    bounds = np.empty(2 * len(starts) + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, total
    bounds[1:-1:2], bounds[2:-1:2] = starts, ends
    counts = np.diff(bounds).tolist()
    return counts[:-1] if counts[-1] == 0 else counts  # no closing 0-run after a mask's last pixel
