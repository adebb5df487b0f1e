"""Resize and flip keep boxes on their masks; sanitising drops boxes that became empty."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes

from msr.data.coco import CocoInstanceDataset
from msr.data.transforms import build_transforms


def _mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Boxes of masks with pixel-edge coordinates (a pixel at column x spans [x, x + 1))."""
    boxes = masks_to_boxes(masks.bool())
    boxes[:, 2:] += 1
    return boxes


def _assert_boxes_follow_masks(target: dict) -> None:
    assert len(target["boxes"]) == len(target["masks"]) == len(target["labels"]) == len(target["area"])
    assert len(target["boxes"]) > 0
    assert torch.allclose(target["boxes"], _mask_boxes(target["masks"]), atol=1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_size": None, "hflip_prob": 1.0},  # flip only
        {"min_size": 96, "hflip_prob": 0.0},  # upscale
        {"min_size": [40, 48], "max_size": 60, "hflip_prob": 1.0},  # downscale, capped, flipped
        {"min_size": 77, "hflip_prob": 1.0, "color_jitter": True},
    ],
)
def test_boxes_equal_boxes_of_transformed_masks(tiny_synthetic, kwargs: dict) -> None:
    raw = CocoInstanceDataset(tiny_synthetic.train_images, tiny_synthetic.train_ann, drop_empty=True)
    transformed = CocoInstanceDataset(
        tiny_synthetic.train_images,
        tiny_synthetic.train_ann,
        build_transforms(train=True, **kwargs),
        drop_empty=True,
    )
    torch.manual_seed(0)
    for index in range(len(raw)):
        _, before = raw[index]
        _assert_boxes_follow_masks(before)  # synthetic boxes are the masks' boxes exactly
        image, after = transformed[index]
        assert image.dtype == torch.float32 and image.min() >= 0 and image.max() <= 1
        assert after["masks"].shape[1:] == image.shape[1:] == after["boxes"].canvas_size
        if kwargs["min_size"] is not None:
            short, long = min(image.shape[1:]), max(image.shape[1:])
            sizes = kwargs["min_size"] if isinstance(kwargs["min_size"], list) else [kwargs["min_size"]]
            assert short in sizes or long == kwargs.get("max_size")
        _assert_boxes_follow_masks(after)


def test_flip_mirrors_boxes_exactly() -> None:
    image = tv_tensors.Image(torch.zeros(3, 10, 20, dtype=torch.uint8))
    masks = torch.zeros(1, 10, 20, dtype=torch.uint8)
    masks[0, 2:5, 1:4] = 1
    target = {
        "boxes": tv_tensors.BoundingBoxes([[1, 2, 4, 5]], format="XYXY", canvas_size=(10, 20)),
        "masks": tv_tensors.Mask(masks),
        "labels": torch.tensor([1]),
        "area": torch.tensor([9.0]),
        "iscrowd": torch.tensor([0]),
        "image_id": 7,
        "orig_size": (10, 20),
    }
    _, out = build_transforms(train=True, hflip_prob=1.0)(image, target)
    assert out["boxes"].tolist() == [[16, 2, 19, 5]]
    assert _mask_boxes(out["masks"]).tolist() == [[16, 2, 19, 5]]
    assert out["image_id"] == 7 and out["orig_size"] == (10, 20)


def test_boxes_that_become_empty_are_removed_with_their_fields() -> None:
    image = tv_tensors.Image(torch.zeros(3, 100, 100, dtype=torch.uint8))
    masks = torch.zeros(2, 100, 100, dtype=torch.uint8)
    masks[0, 10:60, 10:60] = 1
    masks[1, 0:100, 50:51] = 1  # 1 px wide: 0.2 px after resizing to 20
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            [[10, 10, 60, 60], [50, 0, 51, 100]], format="XYXY", canvas_size=(100, 100)
        ),
        "masks": tv_tensors.Mask(masks),
        "labels": torch.tensor([1, 2]),
        "area": torch.tensor([2500.0, 100.0]),
        "iscrowd": torch.tensor([0, 0]),
    }
    _, out = build_transforms(train=False, min_size=20)(image, target)
    assert out["boxes"].shape == (1, 4) and out["masks"].shape == (1, 20, 20)
    assert (
        out["labels"].tolist() == [1] and out["area"].tolist() == [2500.0] and out["iscrowd"].tolist() == [0]
    )


def test_eval_uses_last_size_and_none_means_no_resize() -> None:
    assert build_transforms(train=False, targets=False) is None
    image = tv_tensors.Image(torch.zeros(3, 50, 100, dtype=torch.uint8))
    out = build_transforms(train=False, min_size=[20, 30], targets=False)(image, {"image_id": 1})
    assert out[0].shape == (3, 30, 60)
    with pytest.raises(ValueError, match="min_size"):
        build_transforms(train=True, min_size=[])


def test_multi_scale_draws_each_size() -> None:
    transform = build_transforms(train=True, min_size=[16, 24, 32], hflip_prob=0.0, targets=False)
    torch.manual_seed(0)
    seen = {transform(tv_tensors.Image(torch.zeros(3, 40, 40)), {})[0].shape[-1] for _ in range(40)}
    assert seen == {16, 24, 32}
