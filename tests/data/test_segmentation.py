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


def test_a_triangle_is_the_smallest_polygon_kept():
    from msr.data.segmentation import clean_polygons

    triangle, segment, odd = [0.0, 0.0, 8.0, 0.0, 0.0, 8.0], [0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 0.0, 0.0]
    assert clean_polygons([triangle, segment, odd, [*triangle, float("nan"), 1.0]]) == [triangle]


def test_only_a_dict_with_counts_and_size_is_an_rle():
    from msr.data.segmentation import is_rle_segmentation

    assert is_rle_segmentation({"counts": "a", "size": [2, 2]})
    assert not is_rle_segmentation({"size": [2, 2]}) and not is_rle_segmentation({"counts": "a"})
    assert not is_rle_segmentation(["counts", "size"])  # a list holding those names is no RLE


def test_no_masks_decode_to_an_empty_uint8_stack_of_the_picture_size():
    empty = decode_masks([], 5, 7)
    assert empty.shape == (0, 5, 7) and empty.dtype == np.uint8


def test_boolean_masks_encode_like_uint8_ones_and_area_and_box_read_back():
    from msr.data.segmentation import rle_area, rle_bbox_xywh

    mask = torch.zeros(1, 6, 9, dtype=torch.bool)
    mask[0, 1:4, 2:7] = True
    (rle,) = encode_masks(mask)
    assert rle == encode_masks(mask.to(torch.uint8))[0] and isinstance(rle["counts"], str)
    assert rle_area(rle) == 15 and rle_bbox_xywh(rle) == [2.0, 1.0, 5.0, 3.0]


def test_an_unknown_segmentation_is_refused_naming_its_type():
    with pytest.raises(ValueError, match="not a COCO segmentation .*: int$"):
        segmentation_to_rle(5, 4, 4)
