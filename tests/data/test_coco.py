"""COCO loading through pycocotools: counts, mask areas, id maps, filtering and clear errors."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from msr.data.coco import CocoInstanceDataset
from msr.data.collate import collate_fn
from msr.data.segmentation import mask_to_rle
from msr.errors import DatasetError

# pycocotools (annToMask/decode) calls np.array(copy=False) on its own buffer: harmless under NumPy 2
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _perimeter(polygons: list[list[float]]) -> float:
    total = 0.0
    for polygon in polygons:
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        total += float(np.linalg.norm(np.roll(points, -1, axis=0) - points, axis=1).sum())
    return total


def test_fixture_instance_counts_and_mask_areas(coco_fixture_json: Path, coco_fixture_images: Path) -> None:
    data = json.loads(coco_fixture_json.read_text())
    dataset = CocoInstanceDataset(coco_fixture_images, coco_fixture_json)
    assert len(dataset) == len(data["images"])  # images without instances are kept by default
    expected = Counter(
        a["image_id"] for a in data["annotations"] if not a["iscrowd"] and min(a["bbox"][2:]) >= 1
    )
    anns_by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        if not ann["iscrowd"]:
            anns_by_image.setdefault(ann["image_id"], []).append(ann)
    assert dataset.stats["crowd"] == sum(a["iscrowd"] for a in data["annotations"]) == 9

    for index in range(0, len(dataset), 7):
        image, target = dataset[index]
        image_id = target["image_id"]
        info = dataset.coco.imgs[image_id]
        n = expected.get(image_id, 0)
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.float32
        assert image.shape == (3, info["height"], info["width"])
        assert target["orig_size"] == (info["height"], info["width"])
        assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].shape == (n, 4)
        assert isinstance(target["masks"], tv_tensors.Mask) and target["masks"].shape == (n, *image.shape[1:])
        assert target["masks"].dtype == torch.uint8 and target["labels"].dtype == torch.int64
        assert target["iscrowd"].sum() == 0
        for ann, mask, area in zip(anns_by_image.get(image_id, []), target["masks"], target["area"]):
            # COCO's polygon `area` is the geometric polygon area, the mask counts pixels whose
            # centre falls inside. Only pixels cut by the outline can differ, and their net error is
            # at most the half-pixel band along the outline: |pixels - area| <= 0.5 * perimeter.
            assert abs(int(mask.sum()) - ann["area"]) <= 0.5 * _perimeter(ann["segmentation"])
            assert float(area) == pytest.approx(ann["area"])


def test_crowd_rle_is_decoded_when_included(coco_fixture_json: Path, coco_fixture_images: Path) -> None:
    data = json.loads(coco_fixture_json.read_text())
    crowd = [a for a in data["annotations"] if a["iscrowd"]]
    assert all(isinstance(a["segmentation"]["counts"], list) for a in crowd)  # uncompressed RLE
    dataset = CocoInstanceDataset(coco_fixture_images, coco_fixture_json, include_crowd=True)
    ann = crowd[0]
    index = dataset.ids.index(ann["image_id"])
    _, target = dataset[index]
    kept_ids = [a["id"] for a in dataset.coco.imgToAnns[ann["image_id"]]]  # crowd kept: nothing filtered
    position = kept_ids.index(ann["id"])
    assert target["iscrowd"][position] == 1
    # uncompressed RLE decodes exactly: the pixel count is the annotation area
    assert int(target["masks"][position].sum()) == int(dataset.coco.annToMask(ann).sum())


def _noncontiguous_set(tmp_path: Path, files) -> tuple[Path, Path]:
    images = tmp_path / "images"
    files.image(images / "a.png", 40, 50)
    files.image(images / "b.png", 30, 30)
    files.image(images / "c.png", 30, 30)
    mask = np.zeros((40, 50), dtype=bool)
    mask[5:15, 10:30] = True
    rle = mask_to_rle(mask)  # compressed RLE
    annotations = [
        {
            "id": 1,
            "image_id": 10,
            "category_id": 90,
            "bbox": [2, 2, 10, 10],
            "area": 100,
            "segmentation": files.square(2, 2, 10),
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 10,
            "category_id": 3,
            "bbox": [10, 5, 20, 10],
            "area": 200,
            "segmentation": rle,
            "iscrowd": 0,
        },
        {
            "id": 3,
            "image_id": 10,
            "category_id": 17,
            "bbox": [1, 1, 0.5, 10],
            "area": 5,
            "segmentation": files.square(1, 1, 0.5),
            "iscrowd": 0,
        },  # degenerate box
        {
            "id": 4,
            "image_id": 20,
            "category_id": 17,
            "bbox": [1, 1, 5, 5],
            "area": 25,
            "segmentation": [[1, 1, 6, 1]],
            "iscrowd": 0,
        },  # polygon with 2 points: empty
        {
            "id": 5,
            "image_id": 20,
            "category_id": 17,
            "bbox": [0, 0, 30, 30],
            "area": 900,
            "segmentation": files.square(0, 0, 30),
            "iscrowd": 1,
        },  # crowd only
    ]
    images_json = [
        {"id": 10, "file_name": "a.png", "height": 40, "width": 50},
        {"id": 20, "file_name": "b.png", "height": 30, "width": 30},
        {"id": 30, "file_name": "c.png", "height": 30, "width": 30},
    ]
    categories = [{"id": 90, "name": "zebra"}, {"id": 3, "name": "car"}, {"id": 17, "name": "cat"}]
    return images, files.coco_json(tmp_path / "ann.json", images_json, annotations, categories)


def test_noncontiguous_ids_map_both_ways(tmp_path: Path, files) -> None:
    images, ann = _noncontiguous_set(tmp_path, files)
    dataset = CocoInstanceDataset(images, ann)
    assert dataset.cat_id_to_label == {3: 1, 17: 2, 90: 3}
    assert dataset.label_to_cat_id == {1: 3, 2: 17, 3: 90}
    assert dataset.class_names == ["__background__", "car", "cat", "zebra"]
    assert dataset.num_classes == 4
    _, target = dataset[dataset.ids.index(10)]
    assert target["labels"].tolist() == [3, 1]
    assert [dataset.label_to_cat_id[int(label)] for label in target["labels"]] == [90, 3]
    assert [dataset.class_names[int(label)] for label in target["labels"]] == ["zebra", "car"]


def test_degenerate_empty_crowd_and_empty_images(tmp_path: Path, files, caplog) -> None:
    images, ann = _noncontiguous_set(tmp_path, files)
    with caplog.at_level(logging.INFO, logger="msr.data.coco"):
        kept = CocoInstanceDataset(images, ann)
    assert (
        kept.stats["degenerate_boxes"] == 1 and kept.stats["empty_polygons"] == 1 and kept.stats["crowd"] == 1
    )
    assert "degenerate_boxes" in caplog.text and "empty_polygons" in caplog.text
    assert kept.ids == [10, 20, 30]  # empty images kept (val/test)
    _, target = kept[1]
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 30, 30)

    dropped = CocoInstanceDataset(images, ann, drop_empty=True)  # training
    assert dropped.ids == [10] and dropped.stats["empty_images_dropped"] == 2

    _image, target = dropped[0]
    # boxes come from the annotation bbox, COCO xywh -> xyxy
    assert target["boxes"].tolist() == [[2, 2, 12, 12], [10, 5, 30, 15]]
    assert target["masks"][1].sum() == 200  # compressed RLE decoded
    images_batch, targets_batch = collate_fn([dropped[0], kept[2]])
    assert len(images_batch) == 2 and [t["image_id"] for t in targets_batch] == [10, 30]


def test_missing_image_is_named(tmp_path: Path, files) -> None:
    images, ann = _noncontiguous_set(tmp_path, files)
    (images / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"b\.png"):
        CocoInstanceDataset(images, ann)


def test_unreadable_image_is_named(tmp_path: Path, files) -> None:
    images, ann = _noncontiguous_set(tmp_path, files)
    (images / "a.png").write_bytes(b"\x00garbage bytes, not a PNG" * 4)
    dataset = CocoInstanceDataset(images, ann)
    with pytest.raises(DatasetError, match=r"a\.png"):
        dataset[dataset.ids.index(10)]


def test_image_size_mismatch_is_named(tmp_path: Path, files) -> None:
    images, ann = _noncontiguous_set(tmp_path, files)
    files.image(images / "c.png", 31, 30)
    dataset = CocoInstanceDataset(images, ann)
    with pytest.raises(DatasetError, match=r"c\.png"):
        dataset[dataset.ids.index(30)]


def test_skip_unreadable_reports_count(tmp_path: Path, files, caplog) -> None:
    images, ann = _noncontiguous_set(tmp_path, files)
    (images / "a.png").write_bytes(b"garbage")
    (images / "b.png").unlink()
    with caplog.at_level(logging.WARNING, logger="msr.data.coco"):
        dataset = CocoInstanceDataset(images, ann, skip_unreadable=True)
    assert dataset.num_skipped == 2
    assert sorted(p.name for p in dataset.skipped_files) == ["a.png", "b.png"]
    assert dataset.ids == [30]
    assert "skipped 2" in caplog.text
    dataset[0]


def test_malformed_json_is_named(tmp_path: Path, files) -> None:
    images, _ = _noncontiguous_set(tmp_path, files)
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"broken\.json.*line 1"):
        CocoInstanceDataset(images, bad)
    with pytest.raises(DatasetError, match=r"absent\.json"):
        CocoInstanceDataset(images, tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d.pop("annotations"), "annotations"),
        (lambda d: d["images"][0].pop("height"), "height"),
        (lambda d: d["annotations"][0].pop("segmentation"), "segmentation"),
        (lambda d: d["categories"][0].pop("name"), "name"),
    ],
)
def test_missing_key_is_named(tmp_path: Path, files, edit, key: str) -> None:
    images, ann = _noncontiguous_set(tmp_path, files)
    data = json.loads(ann.read_text())
    edit(data)
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"ann\.json.*'{key}'"):
        CocoInstanceDataset(images, ann)


def test_unknown_category_reference_is_named(tmp_path: Path, files) -> None:
    images, ann = _noncontiguous_set(tmp_path, files)
    data = json.loads(ann.read_text())
    data["annotations"][0]["category_id"] = 999
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"ann\.json.*category_id 999"):
        CocoInstanceDataset(images, ann)


def test_masks_decoded_per_sample_not_up_front(tiny_synthetic) -> None:
    dataset = CocoInstanceDataset(tiny_synthetic.train_images, tiny_synthetic.train_ann)
    # only the raw segmentations are held; no decoded mask arrays are stored on the data set
    stored = [v for t in dataset._targets.values() for v in t.values() if isinstance(v, np.ndarray)]
    assert all(a.ndim <= 2 and a.size <= 4 * 64 for a in stored)
    _, target = dataset[0]
    assert target["masks"].shape[1:] == (64, 64)
