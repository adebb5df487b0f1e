"""The one mask → RLE path: GT segmentations of every COCO form, and batched mask encoding."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from msr.data.segmentation import decode_masks, encode_masks, mask_to_rle, segmentation_to_rle

# pycocotools' decode trips a NumPy 2 deprecation inside the library
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_numpy_and_torch_masks_encode_identically() -> None:
    masks = np.random.default_rng(0).random((4, 13, 17)) > 0.5
    from_numpy = encode_masks(masks)
    assert from_numpy == encode_masks(torch.from_numpy(masks))
    assert from_numpy == encode_masks(masks.astype(np.uint8))
    for mask, rle in zip(masks, from_numpy):
        assert isinstance(rle["counts"], str) and rle["size"] == [13, 17]
        assert rle == mask_to_rle(mask)
        assert np.array_equal(decode_masks([rle], 13, 17)[0], mask)
    assert encode_masks(np.zeros((0, 3, 3), dtype=bool)) == []
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        encode_masks(np.zeros((3, 3), dtype=bool))


def test_every_segmentation_form_gives_the_same_mask() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:6, 3:9] = True
    compressed = mask_to_rle(mask)
    uncompressed = {"size": [10, 12], "counts": [int(c) for c in _run_lengths(mask)]}
    polygon = [[3.0, 2.0, 9.0, 2.0, 9.0, 6.0, 3.0, 6.0]]
    for segmentation in (compressed, uncompressed, polygon, [*polygon, [1, 1, 2, 2]]):  # bad polygon dropped
        rle = segmentation_to_rle(segmentation, 10, 12)
        assert np.array_equal(mask_utils.decode(rle).astype(bool), mask), segmentation
    assert segmentation_to_rle(compressed, 10, 12) is compressed
    empty = segmentation_to_rle([[1, 1, 2, 2]], 10, 12)  # no usable polygon: an empty mask
    assert mask_utils.area(empty) == 0 and list(empty["size"]) == [10, 12]
    with pytest.raises(ValueError, match="not a COCO segmentation"):
        segmentation_to_rle("garbage", 10, 12)


def _run_lengths(mask: np.ndarray) -> list[int]:
    """Return COCO's uncompressed RLE counts of a mask (column-major runs, starting with zeros)."""
    flat = mask.flatten(order="F").astype(np.uint8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return np.diff(np.concatenate([[0], changes])).tolist()
