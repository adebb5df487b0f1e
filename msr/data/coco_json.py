"""Loading and validating COCO instances JSON files into a pycocotools ``COCO`` object."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO

from msr.data.errors import DatasetError

_REQUIRED_TOP = ("images", "annotations", "categories")
_REQUIRED = {
    "images": ("id", "file_name", "height", "width"),
    "annotations": ("id", "image_id", "category_id", "bbox", "segmentation"),
    "categories": ("id", "name"),
}


def read_json(path: str | Path) -> Any:
    """Return the parsed content of a JSON file.

    Raises:
        DatasetError: naming the file when it is missing or not valid JSON (with line and column).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    try:
        with path.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"malformed JSON in {path}: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from exc
    except (UnicodeDecodeError, OSError) as exc:
        raise DatasetError(f"cannot read annotation file {path}: {exc}") from exc


def validate_coco_instances(data: Any, path: str | Path) -> dict:
    """Return ``data`` after checking it has the keys and references of a COCO instances file.

    Checks the top-level lists, the required keys of every image, annotation and category, that
    every annotation points at a known image and category, and that ``bbox`` holds 4 numbers.
    ``iscrowd`` (default 0) and ``area`` (default: computed from the mask) are optional.

    Raises:
        DatasetError: naming ``path`` and the first offending key or record.
    """
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object at top level, got {type(data).__name__}")
    for key in _REQUIRED_TOP:
        if key not in data:
            raise DatasetError(f"{path}: missing required key '{key}'")
        if not isinstance(data[key], list):
            raise DatasetError(f"{path}: '{key}' must be a list, got {type(data[key]).__name__}")
    for section, keys in _REQUIRED.items():
        for i, record in enumerate(data[section]):
            if not isinstance(record, dict):
                raise DatasetError(f"{path}: {section}[{i}] must be an object")
            for key in keys:
                if key not in record:
                    ident = record.get("id", f"#{i}")
                    raise DatasetError(f"{path}: {section}[{i}] (id {ident}) is missing required key '{key}'")
    image_ids = {img["id"] for img in data["images"]}
    cat_ids = {cat["id"] for cat in data["categories"]}
    if len(image_ids) != len(data["images"]):
        raise DatasetError(f"{path}: duplicate image ids in 'images'")
    if len(cat_ids) != len(data["categories"]):
        raise DatasetError(f"{path}: duplicate category ids in 'categories'")
    for ann in data["annotations"]:
        if ann["image_id"] not in image_ids:
            raise DatasetError(f"{path}: annotation {ann['id']} refers to unknown image_id {ann['image_id']}")
        if ann["category_id"] not in cat_ids:
            raise DatasetError(
                f"{path}: annotation {ann['id']} refers to unknown category_id {ann['category_id']}"
            )
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise DatasetError(f"{path}: annotation {ann['id']} has a malformed 'bbox' {bbox!r}")
    return data


def coco_from_dict(data: dict) -> COCO:
    """Return a pycocotools ``COCO`` indexed over ``data`` (its progress prints silenced)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco(path: str | Path) -> COCO:
    """Return a pycocotools ``COCO`` for a validated COCO instances JSON file.

    Raises:
        DatasetError: naming the file when it is missing, malformed or lacks required keys.
    """
    return coco_from_dict(validate_coco_instances(read_json(path), path))
