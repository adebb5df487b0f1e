"""The one validator of COCO instances files, and loading them into a pycocotools `COCO` object.

`validate_coco_instances` is shared by the data sets (which need image file names) and by the
evaluation's ground truth (which does not); it raises the caller's error type.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Mapping
from typing import Any

from pycocotools.coco import COCO

from msr.errors import DatasetError
from msr.files import read_json

_SECTIONS = ("images", "annotations", "categories")


def _required_keys(require_files: bool, require_geometry: bool) -> dict[str, tuple[str, ...]]:
    """Return the keys every record of each section must have."""
    return {
        "images": ("id", "file_name", "height", "width") if require_files else ("id", "height", "width"),
        "annotations": ("id", "image_id", "category_id")
        + (("bbox", "segmentation") if require_geometry else ()),
        "categories": ("id", "name"),
    }


def validate_coco_instances(
    data: Any,
    source: str | os.PathLike,
    *,
    require_files: bool = True,
    require_geometry: bool | None = None,
    error: type[Exception] = DatasetError,
) -> dict:
    """Return `data` (as a dict) after checking it has the keys and references of a COCO instances file.

    Checks: a JSON object with the lists `images`, `annotations`, `categories`; the required keys of
    every record (`file_name` of images only with `require_files`; `bbox` and `segmentation` of
    annotations only with `require_geometry`, which defaults to `require_files`); unique image and
    category ids; every annotation pointing at a known image and category; `bbox`, where present,
    4 numbers. `iscrowd` (default 0) and `area` (default: computed from the mask) are optional.

    Raises:
        error: naming `source` (a path or a description) and the first offending key or record.
    """
    if require_geometry is None:
        require_geometry = require_files
    if not isinstance(data, Mapping):
        raise error(f"{source}: expected a JSON object at top level, got {type(data).__name__}")
    for key in _SECTIONS:
        if not isinstance(data.get(key), list):
            got = f" (got {type(data[key]).__name__})" if key in data else ""
            raise error(f"{source}: missing or non-list key {key!r}{got}")
    for section, keys in _required_keys(require_files, require_geometry).items():
        for i, record in enumerate(data[section]):
            if not isinstance(record, Mapping):
                raise error(f"{source}: {section}[{i}] must be an object")
            for key in keys:
                if key not in record:
                    ident = record.get("id", f"#{i}")
                    raise error(f"{source}: {section}[{i}] (id {ident}) is missing required key '{key}'")
    image_ids = {img["id"] for img in data["images"]}
    cat_ids = {cat["id"] for cat in data["categories"]}
    if len(image_ids) != len(data["images"]):
        raise error(f"{source}: duplicate image ids in 'images'")
    if len(cat_ids) != len(data["categories"]):
        raise error(f"{source}: duplicate category ids in 'categories'")
    for ann in data["annotations"]:
        if ann["image_id"] not in image_ids:
            raise error(f"{source}: annotation {ann['id']} refers to unknown image_id {ann['image_id']}")
        if ann["category_id"] not in cat_ids:
            raise error(
                f"{source}: annotation {ann['id']} refers to unknown category_id {ann['category_id']}"
            )
        if "bbox" in ann and not _is_xywh(ann["bbox"]):
            raise error(f"{source}: annotation {ann['id']} has a malformed 'bbox' {ann['bbox']!r}")
    return data if isinstance(data, dict) else dict(data)


def _is_xywh(bbox: Any) -> bool:
    """Return True when `bbox` is a list of 4 numbers."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return False
    return all(isinstance(v, (int, float)) for v in bbox)


def coco_from_dict(data: dict) -> COCO:
    """Return a pycocotools `COCO` indexed over `data` (its progress prints silenced)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco(path: str | os.PathLike) -> COCO:
    """Return a pycocotools `COCO` for a validated COCO instances JSON file.

    Raises:
        DatasetError: naming the file when it is missing, malformed or lacks required keys.
    """
    data = read_json(path, what="annotation file", error=DatasetError)
    return coco_from_dict(validate_coco_instances(data, path))
