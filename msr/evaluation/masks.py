"""COCO RLE straight from box crops: the segm results of `BoxMasks` without a full-image array.

COCO's RLE runs down the columns of the [H, W] image (column-major), alternating 0-runs and 1-runs,
starting with a 0-run (possibly empty) and ending with the last run that holds a pixel. Outside its
region a mask is 0, so the runs of ones follow from the crop alone: a run inside a crop column starts
at `(x0 + column) * H + y0 + row`; a run that ends on the last row of the image and one that starts on
the first row of the next column are one run. The run lengths then go through pycocotools' own
compression, so the `counts` strings are those of `pycocotools.mask.encode` on the dense mask.

All crops of a picture are read in one pass over their row-major data, without transposing any: each
crop, with a row of zeros above and below it, is compared with itself one row (one crop width) down.
Where a pixel differs from the one above it, a column run begins or ends at that pixel (row h of an
[h, w] crop: the end of a run down to its last row). Sorted by (crop, column-major index in the image),
these run bounds alternate start, end in each column, in RLE order; an end at the bottom of the image
that equals the start at the top of the next column joins two runs into one.
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
    data = masks.data.detach().cpu().contiguous().numpy().reshape(-1)
    counts = box_mask_counts(data, masks.regions.numpy(), height, width)
    if not counts:
        return []
    rles = mask_utils.frPyObjects([{"size": [height, width], "counts": c} for c in counts], height, width)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def mask_counts(crop: np.ndarray, region: list[int], height: int, width: int) -> list[int]:
    """Return the uncompressed COCO RLE counts of the [height, width] mask that is `crop` [h, w] (bool) at
    `region` (x0, y0, x1, y1) and 0 elsewhere."""
    regions = np.asarray([region], dtype=np.int64)
    return box_mask_counts(np.ascontiguousarray(crop).reshape(-1), regions, height, width)[0].tolist()


def box_mask_counts(data: np.ndarray, regions: np.ndarray, height: int, width: int) -> list[np.ndarray]:
    """Return the uncompressed COCO RLE counts (uint32) of each [height, width] mask held as a crop.

    `data`: bool, the row-major crops one after another; `regions` [N, 4] int xyxy (x1, y1 exclusive)
    of each crop in the image, whose area is its share of `data`.
    """
    regions = regions.astype(np.int64, copy=False).reshape(-1, 4)
    sizes = np.clip(regions[:, [3, 2]] - regions[:, [1, 0]], 0, None)  # [N, 2] crop height, width
    total = height * width
    bounds, crops = _run_bounds(data, regions, sizes, height, total)
    joined = np.flatnonzero(bounds[1:-1:2] == bounds[2::2])  # an end equal to the next start
    if joined.size:
        keep = np.ones(len(bounds), dtype=bool)
        keep[2 * joined + 1] = keep[2 * joined + 2] = False
        bounds, crops = bounds[keep], crops[keep]
    return _split_counts(bounds, crops, len(regions), total)


def _run_bounds(
    data: np.ndarray, regions: np.ndarray, sizes: np.ndarray, height: int, total: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (keys, crops) of every column-run bound of the crops, sorted: the key of a bound is
    `crop * (total + 1) + its column-major index in the image` (a start: its first pixel; an end: one
    past its last), and `crops` the crop of each (in the same order)."""
    widths = sizes[:, 1]
    padded = np.concatenate([[0], np.cumsum((sizes[:, 0] + 1) * widths)])  # each crop, a row below it
    marks = np.flatnonzero(_vertical_changes(data, sizes, padded))
    crops = np.searchsorted(padded, marks, side="right") - 1
    row, column = np.divmod(marks - padded[crops], widths[crops])
    keys = crops * (total + 1) + (regions[crops, 0] + column) * height + regions[crops, 1] + row
    keys.sort()  # crops stay as they are: `marks` run crop by crop, so `crops` is sorted already
    return keys, crops


def _vertical_changes(data: np.ndarray, sizes: np.ndarray, padded: np.ndarray) -> np.ndarray:
    """Return bool [padded[-1]]: crop by crop (crop i from `padded[i]`, [h + 1, w]
    row-major), whether each pixel differs from the one above it, zeros above and below the crop."""
    heights, widths = sizes[:, 0], sizes[:, 1]
    offsets = np.concatenate([[0], np.cumsum(heights * widths)])
    changes = np.zeros(int(padded[-1]), dtype=bool)
    edge_widths = np.where(heights > 0, widths, 0)  # an empty crop: no row to copy
    for source, target in ((offsets[:-1], padded[:-1]), (offsets[1:] - widths, padded[1:] - widths)):
        within = np.arange(edge_widths.sum()) - np.repeat(np.cumsum(edge_widths) - edge_widths, edge_widths)
        changes[np.repeat(target, edge_widths) + within] = data[np.repeat(source, edge_widths) + within]
    for begin, stop, start, w in zip(
        offsets[:-1].tolist(), offsets[1:].tolist(), padded.tolist(), widths.tolist()
    ):
        if stop - begin > w:  # two rows or more
            np.not_equal(
                data[begin + w : stop], data[begin : stop - w], out=changes[start + w : start + stop - begin]
            )
    return changes


def _split_counts(bounds: np.ndarray, crops: np.ndarray, n: int, total: int) -> list[np.ndarray]:
    """Return the RLE counts (uint32) of each of the `n` masks from the sorted keys of their run bounds
    (`crops`: the mask of each): [first start, length, gap, length, ..., last gap unless empty]."""
    per_mask = np.bincount(crops, minlength=n)
    first = np.concatenate([[0], np.cumsum(per_mask + 2)])  # where each mask's [0, bounds, total] begin
    keyed = np.empty(first[-1], dtype=np.int64)
    base = np.arange(n, dtype=np.int64) * (total + 1)
    keyed[first[:-1]] = base
    keyed[first[1:] - 1] = base + total
    keyed[np.arange(len(bounds)) + 2 * crops + 1] = bounds
    counts = np.diff(keyed).astype(np.uint32)
    stops = first[1:] - 1  # one past each mask's last count
    stops -= (per_mask > 0) & (counts[np.maximum(stops - 1, 0)] == 0)  # no 0-run after a last pixel
    return [counts[a:b] for a, b in zip(first[:-1].tolist(), stops.tolist())]
