"""CocoInstanceDataset on tiny hand-made COCO sets: exact boxes, labels, masks, areas, kept and dropped
annotations, the float image, EXIF readings, and the whole text of every error and log message."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

import msr.data.coco as coco_module
from msr.data.annotation_store import AnnotationStoreBuilder
from msr.data.coco import CocoInstanceDataset, _all_usable, _visible_sides
from msr.data.image_io import STORED
from msr.data.segmentation import mask_to_rle
from msr.errors import DatasetError

# pycocotools (decode) calls np.array(copy=False) on its own buffer: harmless under NumPy 2
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TARGET_KEYS = {"boxes", "labels", "masks", "image_id", "area", "iscrowd", "orig_size"}


def picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Return an [H, W, 3] uint8 picture of distinct-looking values (0 and 255 included)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels[0, 0] = (0, 128, 255)
    return pixels


def save_png(path: Path, pixels: np.ndarray, orientation: int = 1) -> Path:
    """Save `pixels` as a PNG; with an EXIF `orientation` (2-8) save what that tag turns into `pixels`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    if orientation == 1:
        image.save(path)
        return path
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.transpose(STORED[orientation]).save(path, exif=exif.tobytes())
    return path


def write_json(path: Path, images: list[dict], annotations: list[dict], categories=None, info=None) -> Path:
    data = {
        "images": images,
        "annotations": annotations,
        "categories": categories or [{"id": 1, "name": "thing"}],
    }
    if info is not None:
        data["info"] = info
    path.write_text(json.dumps(data))
    return path


def ann(ann_id: int, image_id: int, bbox: list[float], segmentation=None, category_id: int = 1, **extra):
    """Return an annotation; by default its polygon is the (integer) box itself, area and iscrowd 0 given."""
    if segmentation is None:
        x, y, w, h = bbox
        segmentation = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    record = {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox}
    record.update({"segmentation": segmentation, "area": 1.0, "iscrowd": 0})
    record.update(extra)
    return {k: v for k, v in record.items() if v is not None}


def image_record(image_id: int, name: str, height: int, width: int) -> dict:
    return {"id": image_id, "file_name": name, "height": height, "width": width}


def assert_float_image(image: torch.Tensor, pixels: np.ndarray | torch.Tensor) -> None:
    """Assert `image` is the float32 tv_tensors.Image [3, H, W] of uint8 `pixels` [H, W, 3] over 255."""
    chw = torch.as_tensor(pixels).permute(2, 0, 1)
    assert type(image) is tv_tensors.Image and image.dtype == torch.float32 and image.shape == chw.shape
    torch.testing.assert_close(image, chw.to(torch.float32) / 255, rtol=0, atol=1e-7)
    assert torch.equal((image * 255).round().to(torch.uint8), chw)


# -- boxes ---------------------------------------------------------------------------------------------


def test_boxes_are_xyxy_clipped_to_their_own_picture(tmp_path: Path) -> None:
    images = tmp_path / "images"
    save_png(images / "wide.png", picture(10, 20))
    save_png(images / "tall.png", picture(30, 5, seed=1))
    square = [[1, 1, 3, 1, 3, 3, 1, 3]]
    annotations = [
        ann(1, 1, [-3, -2, 8, 6], square),  # over the top left corner
        ann(2, 1, [15, 7, 10, 10], square),  # over the bottom right corner
        ann(3, 1, [25, 12, 5, 5], square),  # wholly past the bottom right: dropped
        ann(4, 1, [-10, -10, 5, 5], square),  # wholly before the top left: dropped
        ann(8, 1, [19.5, 2, 5, 5], square),  # 0.5 px of it inside: dropped
        ann(5, 1, [2.5, 3.25, 1.0, 1.0], square),  # sides of exactly min_box_size: kept
        ann(6, 2, [-1, 25, 7, 10], square),  # the tall picture: its own width and height
        ann(7, 2, [1, 1, 3, 3], square),
    ]
    images_json = [image_record(1, "wide.png", 10, 20), image_record(2, "tall.png", 30, 5)]
    dataset = CocoInstanceDataset(images, write_json(tmp_path / "ann.json", images_json, annotations))
    counts = {"degenerate_boxes": 3, "empty_polygons": 0, "crowd": 0, "empty_images_dropped": 0}
    assert dataset.stats == counts
    _, wide = dataset[0]
    assert wide["boxes"].dtype == torch.float32
    assert wide["boxes"].tolist() == [
        [0, 0, 5, 4],
        [15, 7, 20, 10],
        [2.5, 3.25, 3.5, 4.25],
    ]
    assert wide["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY and wide["boxes"].canvas_size == (10, 20)
    _, tall = dataset[1]
    assert tall["boxes"].tolist() == [[0, 25, 5, 30], [1, 1, 4, 4]]
    assert tall["boxes"].canvas_size == (30, 5)


@pytest.mark.parametrize(
    ("bbox", "sides"),
    [
        ([-3, -2, 8, 6], (5.0, 4.0)),  # over the top left corner
        ([15, 7, 10, 10], (5.0, 3.0)),  # over the bottom right corner
        ([25, 12, 5, 5], (-5.0, -2.0)),  # wholly past the bottom right
        ([-10, -10, 5, 5], (-5.0, -5.0)),  # wholly before the top left
        ([2.5, 3.25, 1, 1], (1.0, 1.0)),  # inside: its own sides
    ],
)
def test_visible_sides_of_a_box_on_a_10_by_20_picture(bbox, sides):
    assert _visible_sides(bbox, 10, 20) == sides


def test_box_sides_below_min_box_size_are_dropped_and_counted(tmp_path: Path) -> None:
    images = tmp_path / "images"
    save_png(images / "a.png", picture(10, 10))
    square = [[1, 1, 3, 1, 3, 3, 1, 3]]
    annotations = [
        ann(1, 1, [1, 1, 0, 5], square),  # zero width
        ann(2, 1, [1, 1, 5, 0], square),  # zero height
        ann(3, 1, [1, 1, 0.999, 5], square),
        ann(4, 1, [1, 1, 5, 0.999], square),
        ann(5, 1, [1, 1, 1, 1], square),  # 1 x 1: kept by default
        ann(6, 1, [1, 1, 1.5, 2], square),  # kept by default, dropped with min_box_size=2
    ]
    ann_file = write_json(tmp_path / "ann.json", [image_record(1, "a.png", 10, 10)], annotations)
    dataset = CocoInstanceDataset(images, ann_file)
    assert dataset.stats["degenerate_boxes"] == 4
    assert dataset[0][1]["boxes"].tolist() == [[1, 1, 2, 2], [1, 1, 2.5, 3]]
    strict = CocoInstanceDataset(images, ann_file, min_box_size=2.0)
    assert strict.stats["degenerate_boxes"] == 6 and strict[0][1]["boxes"].shape == (0, 4)


# -- which annotations are kept -------------------------------------------------------------------------


def test_all_usable_is_true_exactly_when_every_polygon_is_kept_as_is() -> None:
    triangle = [0, 0, 4, 0, 4, 3]
    assert _all_usable([]) is True
    assert _all_usable([triangle]) is True
    assert _all_usable([triangle, [0, 0, 1, 0, 1, 1, 0, 1]]) is True
    assert _all_usable([triangle, [0, 0, 1, 0]]) is False  # 2 points
    assert _all_usable([[0, 0, 4, 0, 4, 3, 5]]) is False  # 7 coordinates
    assert _all_usable([[0, 0, 4, 0, 4, 3, 5, 5, 6]]) is False  # 9 coordinates
    assert _all_usable([[0, 0, 4, 0, 4, float("nan")]]) is False
    assert _all_usable([[0, 0, 4, 0, float("inf"), 3]]) is False
    assert _all_usable([["0", "0", "4", "0", "4", "3"]]) is False  # not numbers: clean_polygons decides


def test_polygons_are_cleaned_only_when_one_is_unusable(tmp_path: Path, monkeypatch) -> None:
    images = tmp_path / "images"
    save_png(images / "a.png", picture(8, 10))
    annotations = [
        ann(1, 1, [1, 1, 2, 2]),  # usable as is: no cleaning pass
        ann(2, 1, [4, 4, 3, 2], [[0, 0, 1], [4, 4, 7, 4, 7, 6, 4, 6]]),  # one polygon of 3 coordinates
    ]
    ann_file = write_json(tmp_path / "ann.json", [image_record(1, "a.png", 8, 10)], annotations)
    calls = []
    original = coco_module.clean_polygons

    def spy(polygons):
        calls.append(polygons)
        return original(polygons)

    monkeypatch.setattr(coco_module, "clean_polygons", spy)
    dataset = CocoInstanceDataset(images, ann_file)
    assert calls == [[[0, 0, 1], [4, 4, 7, 4, 7, 6, 4, 6]]]
    assert dataset._targets[1]["anns"][1]["segmentation"] == [[4.0, 4.0, 7.0, 4.0, 7.0, 6.0, 4.0, 6.0]]


def test_unusable_polygons_are_left_out_and_annotations_without_any_dropped(tmp_path: Path) -> None:
    images = tmp_path / "images"
    save_png(images / "a.png", picture(8, 10))
    annotations = [
        ann(1, 1, [4, 4, 3, 2], [[0, 0, 1, 0], [4, 4, 7, 4, 7, 6, 4, 6]]),  # 2 points, then a rectangle
        ann(2, 1, [1, 1, 2, 2], [[1, 1, 3, 1, 3, 3, 1, 3, 2]]),  # 9 coordinates: odd, no polygon left
        ann(3, 1, [1, 1, 2, 2], [[1, 1, 3, 1, 3, 3, 1]]),  # 7 coordinates
        ann(4, 1, [1, 1, 2, 2], [[1, 1, 3, 1]]),  # 2 points
        ann(5, 1, [1, 1, 2, 2], [[1, 1, 3, 1, 3, 3], [0, 0, 2, 0, 2, 2, 0, 2]]),  # a triangle: kept
    ]
    ann_file = write_json(tmp_path / "ann.json", [image_record(1, "a.png", 8, 10)], annotations)
    dataset = CocoInstanceDataset(images, ann_file)
    assert dataset.stats["empty_polygons"] == 3
    _, target = dataset[0]
    assert target["boxes"].tolist() == [[4, 4, 7, 6], [1, 1, 3, 3]]
    expected = np.zeros((2, 8, 10), dtype=np.uint8)
    expected[0, 4:6, 4:7] = 1
    expected[1, 0:2, 0:2] = 1
    expected[1, 1, 2] = 1  # the triangle's one pixel outside the square
    assert np.array_equal(target["masks"].numpy(), expected)


def test_crowd_and_missing_iscrowd(tmp_path: Path) -> None:
    images = tmp_path / "images"
    save_png(images / "a.png", picture(8, 10))
    annotations = [
        ann(1, 1, [0, 0, 2, 2], iscrowd=None),  # no iscrowd key: not a crowd
        ann(2, 1, [2, 2, 2, 2], iscrowd=1),
        ann(3, 1, [4, 4, 2, 2], iscrowd=1),
        ann(4, 1, [6, 4, 2, 2], iscrowd=0),
    ]
    ann_file = write_json(tmp_path / "ann.json", [image_record(1, "a.png", 8, 10)], annotations)
    dataset = CocoInstanceDataset(images, ann_file)
    assert dataset.stats["crowd"] == 2
    _, target = dataset[0]
    assert target["boxes"].tolist() == [[0, 0, 2, 2], [6, 4, 8, 6]]
    assert target["iscrowd"].tolist() == [0, 0] and target["iscrowd"].dtype == torch.int64
    with_crowd = CocoInstanceDataset(images, ann_file, include_crowd=True)
    assert with_crowd.stats["crowd"] == 0
    assert with_crowd[0][1]["iscrowd"].tolist() == [0, 1, 1, 0]


# -- the target dict --------------------------------------------------------------------------------------


def _target_set(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    images = tmp_path / "images"
    pixels = picture(6, 8)
    save_png(images / "p.png", pixels)
    save_png(images / "q.png", picture(4, 4, seed=2))
    rle_mask = np.zeros((6, 8), dtype=bool)
    rle_mask[1:4, 5:8] = True
    uncompressed = {"size": [6, 8], "counts": [2, 2, 4, 2, 38]}  # column-major: rows 2..3 of columns 0 and 1
    annotations = [
        ann(11, 5, [1, 1, 2, 3], category_id=40, area=6.5),
        ann(12, 5, [5, 1, 3, 3], mask_to_rle(rle_mask), category_id=2, area=None),  # no area: the mask's
        ann(13, 5, [0, 0, 2, 2], uncompressed, category_id=7, area=None, iscrowd=1),
        ann(14, 5, [0, 2, 1, 2], category_id=7, area=0),
    ]
    categories = [{"id": 40, "name": "c"}, {"id": 2, "name": "a"}, {"id": 7, "name": "b"}]
    images_json = [image_record(5, "p.png", 6, 8), image_record(9, "q.png", 4, 4)]
    return images, write_json(tmp_path / "ann.json", images_json, annotations, categories), pixels


def test_target_has_every_key_with_its_exact_type_and_value(tmp_path: Path) -> None:
    images, ann_file, pixels = _target_set(tmp_path)
    dataset = CocoInstanceDataset(images, ann_file, include_crowd=True)
    assert dataset.cat_id_to_label == {2: 1, 7: 2, 40: 3}
    assert dataset.label_to_cat_id == {1: 2, 2: 7, 3: 40}
    assert dataset.class_names == ["__background__", "a", "b", "c"] and dataset.num_classes == 4
    image, target = dataset[0]
    assert set(target) == TARGET_KEYS
    boxes = target["boxes"]
    assert type(boxes) is tv_tensors.BoundingBoxes and boxes.dtype == torch.float32
    assert boxes.format == tv_tensors.BoundingBoxFormat.XYXY and boxes.canvas_size == (6, 8)
    assert boxes.tolist() == [[1, 1, 3, 4], [5, 1, 8, 4], [0, 0, 2, 2], [0, 2, 1, 4]]
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [3, 1, 2, 2]
    masks = target["masks"]
    assert type(masks) is tv_tensors.Mask and masks.dtype == torch.uint8 and masks.shape == (4, 6, 8)
    expected = np.zeros((4, 6, 8), dtype=np.uint8)
    expected[0, 1:4, 1:3] = 1
    expected[1, 1:4, 5:8] = 1
    expected[2, 2:4, 0] = 1
    expected[2, 2:4, 1] = 1
    expected[3, 2:4, 0] = 1
    assert np.array_equal(masks.numpy(), expected)
    assert type(target["image_id"]) is int and target["image_id"] == 5
    assert target["area"].dtype == torch.float32 and target["area"].tolist() == [6.5, 9.0, 4.0, 0.0]
    assert target["iscrowd"].dtype == torch.int64 and target["iscrowd"].tolist() == [0, 0, 1, 0]
    assert target["orig_size"] == (6, 8) and type(target["orig_size"]) is tuple
    assert_float_image(image, pixels)
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0

    _, empty = dataset[1]
    assert set(empty) == TARGET_KEYS and empty["image_id"] == 9 and empty["orig_size"] == (4, 4)
    assert empty["boxes"].shape == (0, 4) and empty["boxes"].dtype == torch.float32
    assert empty["masks"].shape == (0, 4, 4) and empty["labels"].shape == (0,)
    assert empty["area"].shape == (0,) and empty["area"].dtype == torch.float32


def test_area_stays_float32_under_a_float64_default_dtype(tmp_path: Path) -> None:
    images, ann_file, _ = _target_set(tmp_path)
    dataset = CocoInstanceDataset(images, ann_file, include_crowd=True)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        target = dataset.load_target(0, 6, 8)
        empty = dataset.load_target(1, 4, 4)
    finally:
        torch.set_default_dtype(default)
    assert target["area"].dtype == torch.float32 and target["area"].tolist() == [6.5, 9.0, 4.0, 0.0]
    assert empty["area"].dtype == torch.float32


def test_transforms_get_the_uint8_image_and_target_and_their_output_is_returned(tmp_path: Path) -> None:
    images, ann_file, pixels = _target_set(tmp_path)
    calls = []

    def transforms(image, target):
        calls.append((image, target))
        return tv_tensors.Image(image.flip(-1)), {"seen": target["image_id"]}

    dataset = CocoInstanceDataset(images, ann_file, transforms)
    assert dataset.transforms is transforms
    image, target = dataset[0]
    ((given_image, given_target),) = calls
    assert type(given_image) is tv_tensors.Image and given_image.dtype == torch.uint8
    assert torch.equal(given_image, torch.from_numpy(pixels).permute(2, 0, 1))
    assert set(given_target) == TARGET_KEYS and given_target["image_id"] == 5
    assert target == {"seen": 5}
    assert_float_image(image, pixels[:, ::-1].copy())


def test_pickles_without_the_pycocotools_index(tmp_path: Path) -> None:
    images, ann_file, _ = _target_set(tmp_path)
    dataset = CocoInstanceDataset(images, ann_file)
    copy = pickle.loads(pickle.dumps(dataset))  # no coco built yet
    assert copy.ids == dataset.ids and "coco" not in copy.__dict__
    assert torch.equal(copy[0][1]["masks"], dataset[0][1]["masks"])
    assert len(dataset.coco.imgs) == 2  # built on demand ...
    state = dataset.__getstate__()
    assert "coco" not in state and "coco" in dataset.__dict__  # ... and left out of the pickle
    assert "coco" not in pickle.loads(pickle.dumps(dataset)).__dict__


def test_an_empty_data_set_has_no_aspect_ratios(tmp_path: Path) -> None:
    images = tmp_path / "images"
    save_png(images / "a.png", picture(4, 6))
    ann_file = write_json(tmp_path / "ann.json", [image_record(1, "a.png", 4, 6)], [])
    assert CocoInstanceDataset(images, ann_file).aspect_ratios() == [1.5]
    empty = CocoInstanceDataset(images, ann_file, drop_empty=True)
    assert len(empty) == 0 and empty.ids == [] and empty.aspect_ratios() == []


def test_dropped_annotations_are_logged_in_one_line(tmp_path: Path, caplog) -> None:
    images = tmp_path / "images"
    save_png(images / "a.png", picture(8, 10))
    save_png(images / "b.png", picture(8, 10))
    annotations = [ann(1, 1, [0, 0, 0.5, 2]), ann(2, 1, [0, 0, 2, 2], iscrowd=1), ann(3, 1, [0, 0, 2, 2])]
    images_json = [image_record(1, "a.png", 8, 10), image_record(2, "b.png", 8, 10)]
    ann_file = write_json(tmp_path / "ann.json", images_json, annotations)
    with caplog.at_level(logging.INFO, logger="msr.data.coco"):
        CocoInstanceDataset(images, ann_file)
    assert [r.getMessage() for r in caplog.records if r.name == "msr.data.coco"] == [
        f"{ann_file}: 2 images; dropped {{'degenerate_boxes': 1, 'crowd': 1}}"
    ]


# -- messages of defects that the file validation lets through to the data set ---------------------------


def _one_image_set(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    save_png(images / "a.png", picture(30, 40))
    return images, write_json(tmp_path / "ann.json", [image_record(3, "a.png", 30, 40)], [])


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"segmentation": {"size": [10, 20], "counts": "PP"}},
            "annotation 7 has RLE size [10, 20] but image 3 is 30x40",
        ),
        ({"segmentation": {"counts": "PP"}}, "annotation 7 has a malformed 'segmentation'"),
        ({"segmentation": 5}, "annotation 7 has a malformed 'segmentation'"),
        ({"area": "big"}, "annotation 7 has a non-numeric 'area' 'big'"),
        ({"area": [1]}, "annotation 7 has a non-numeric 'area' [1]"),
    ],
)
def test_add_annotations_names_the_annotation_at_fault(tmp_path: Path, record: dict, message: str) -> None:
    """load_coco's validation rejects these first; `_add_annotations` checks them again for its other
    callers, in the same words."""
    images, ann_file = _one_image_set(tmp_path)
    dataset = CocoInstanceDataset(images, ann_file)
    builder = AnnotationStoreBuilder()
    builder.add_image(3, "a.png", 30, 40)
    annotation = {**ann(7, 3, [1, 1, 2, 2]), **record}
    with pytest.raises(DatasetError) as error:
        dataset._add_annotations(builder, image_record(3, "a.png", 30, 40), [annotation], 1.0)
    assert str(error.value) == f"{ann_file}: {message}"


# -- missing and unreadable pictures ----------------------------------------------------------------------


def _three_pictures(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    for name in ("a.png", "b.png", "c.png"):
        save_png(images / name, picture(4, 6))
    images_json = [image_record(i, f"{n}.png", 4, 6) for i, n in ((1, "a"), (2, "b"), (3, "c"))]
    return images, write_json(tmp_path / "ann.json", images_json, [])


def test_missing_picture_folder_message(tmp_path: Path) -> None:
    _, ann_file = _three_pictures(tmp_path)
    with pytest.raises(DatasetError) as error:
        CocoInstanceDataset(tmp_path / "nowhere", ann_file)
    assert str(error.value) == f"image folder not found: {tmp_path / 'nowhere'} (images of {ann_file})"


@pytest.mark.parametrize(
    ("missing", "more"),
    [(["b"], ""), (["a", "c"], " (and 1 more missing)"), (["a", "b", "c"], " (and 2 more missing)")],
)
def test_missing_pictures_message_names_the_first_and_counts_the_others(
    tmp_path: Path, missing: list[str], more: str
) -> None:
    images, ann_file = _three_pictures(tmp_path)
    for name in missing:
        (images / f"{name}.png").unlink()
    with pytest.raises(DatasetError) as error:
        CocoInstanceDataset(images, ann_file)
    first = images / f"{missing[0]}.png"
    assert str(error.value) == f"image file not found: {first}{more}, listed in {ann_file}"


def test_skip_unreadable_keeps_the_good_pictures_in_order_and_warns_once(tmp_path: Path, caplog) -> None:
    images = tmp_path / "images"
    save_png(images / "small.png", picture(3, 6))  # the file says 4 x 6
    save_png(images / "good1.png", picture(4, 6))
    (images / "broken.png").write_bytes(b"not a picture")
    save_png(images / "good2.png", picture(4, 6))
    names = ["small.png", "good1.png", "absent.png", "broken.png", "good2.png"]
    images_json = [image_record(i + 1, name, 4, 6) for i, name in enumerate(names)]
    ann_file = write_json(tmp_path / "ann.json", images_json, [])
    with caplog.at_level(logging.WARNING, logger="msr.data.coco"):
        dataset = CocoInstanceDataset(images, ann_file, skip_unreadable=True)
    assert dataset.ids == [2, 5] and dataset.num_skipped == 3
    assert dataset.skipped_files == [images / "small.png", images / "absent.png", images / "broken.png"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{ann_file}: skipped 3 missing or unreadable images (first: {images / 'small.png'})"
    ]
    assert dataset.aspect_ratios() == [1.5, 1.5]


def test_a_picture_of_another_size_is_named_with_both_sizes(tmp_path: Path) -> None:
    images = tmp_path / "images"
    save_png(images / "a.png", picture(4, 6))
    ann_file = write_json(tmp_path / "ann.json", [image_record(1, "a.png", 5, 7)], [])
    dataset = CocoInstanceDataset(images, ann_file)
    with pytest.raises(DatasetError) as error:
        dataset[0]
    assert str(error.value) == f"image {images / 'a.png'} is 6x4 (WxH) but {ann_file} says 7x5"


# -- EXIF orientation -------------------------------------------------------------------------------------


def _turned_set(tmp_path: Path, info=None) -> tuple[Path, Path, np.ndarray]:
    """One picture stored 6 wide and 4 high with EXIF orientation 6: upright 4 wide and 6 high, the size
    the file gives."""
    images = tmp_path / "images"
    upright = picture(6, 4, seed=7)
    save_png(images / "t.png", upright, orientation=6)
    ann_file = write_json(
        tmp_path / "ann.json", [image_record(42, "t.png", 6, 4)], [ann(1, 42, [0, 1, 2, 3])], info=info
    )
    return images, ann_file, upright


def _wrong_reading_message(images: Path, ann_file: Path) -> str:
    return (
        f"image {images / 't.png'} is stored 6x4 (WxH) with EXIF orientation 6 (turned 90°); {ann_file} says "
        "4x6 for image 42, its upright size: the file's regions are drawn on the upright picture: set "
        "data.exif_orientation=apply (now ignore: read as stored)"
    )


@pytest.mark.parametrize("skip_unreadable", [False, True])
def test_pictures_read_upright_when_the_file_says_so(tmp_path: Path, skip_unreadable: bool) -> None:
    images, ann_file, upright = _turned_set(tmp_path, info={"exif_orientation": "apply"})
    dataset = CocoInstanceDataset(images, ann_file, skip_unreadable=skip_unreadable)
    assert dataset.exif_orientation == "auto" and dataset.reading == "apply" and dataset.upright is True
    assert dataset.ids == [42] and dataset.skipped_files == []
    image, target = dataset[0]
    assert_float_image(image, upright)
    assert target["orig_size"] == (6, 4) and target["boxes"].tolist() == [[0, 1, 2, 4]]


def test_the_option_overrides_what_the_file_says(tmp_path: Path) -> None:
    images, ann_file, _ = _turned_set(tmp_path, info={"exif_orientation": "apply"})
    dataset = CocoInstanceDataset(images, ann_file, exif_orientation="ignore")
    assert dataset.exif_orientation == "ignore" and dataset.reading == "ignore" and dataset.upright is False
    with pytest.raises(DatasetError) as error:
        dataset[0]
    assert str(error.value) == _wrong_reading_message(images, ann_file)


@pytest.mark.parametrize("info", [None, {"exif_orientation": "ignore"}, {"description": "apply"}])
def test_the_wrong_reading_of_a_quarter_turn_names_the_option_when_loaded(tmp_path: Path, info) -> None:
    images, ann_file, _ = _turned_set(tmp_path, info=info)
    dataset = CocoInstanceDataset(images, ann_file)
    assert dataset.exif_orientation == "auto" and dataset.reading == "ignore" and dataset.upright is False
    with pytest.raises(DatasetError) as error:
        dataset[0]
    assert str(error.value) == _wrong_reading_message(images, ann_file)


def test_the_wrong_reading_of_a_quarter_turn_stops_skip_unreadable(tmp_path: Path) -> None:
    images, ann_file, _ = _turned_set(tmp_path)
    with pytest.raises(DatasetError) as error:
        CocoInstanceDataset(images, ann_file, skip_unreadable=True)
    assert str(error.value) == _wrong_reading_message(images, ann_file)
