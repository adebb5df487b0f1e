"""The one validator of COCO instances files, and loading them into a pycocotools `COCO` object.

`validate_coco_instances` is shared by the data sets (which need image file names) and by the
evaluation's ground truth (which does not); it raises the caller's error type. Every message names the
file, the record and the value at fault, and says what to do.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

from pycocotools.coco import COCO

from msr.errors import DatasetError
from msr.files import read_json

log = logging.getLogger(__name__)

_SECTIONS = ("images", "annotations", "categories")
#: How many offending ids a message lists.
_MAX_IDS = 5


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
    evaluated: bool = True,
    error: type[Exception] = DatasetError,
) -> dict:
    """Return `data` (as a dict) after checking it has the keys, references and geometry of a COCO
    instances file.

    Checks: a JSON object with the lists `images`, `annotations`, `categories`, the first and the last
    not empty; the required keys of every record (`file_name` of images only with `require_files`;
    `bbox` and `segmentation` of annotations only with `require_geometry`, which defaults to
    `require_files`); image sizes positive whole numbers; unique image and category ids; every
    annotation pointing at a known image and category; where present, `bbox` 4 finite numbers, `area`
    a finite number >= 0, `iscrowd` 0 or 1 (or false/true) and `segmentation` polygons (lists of numbers)
    or an RLE whose `size` is its image's [height, width] (and, uncompressed, whose counts cover the
    picture). `iscrowd` (default 0) and `area` (default: computed from the mask) are optional.

    Polygons of fewer than 3 points (or with an odd or non-finite coordinate) cannot be rasterised:
    with `evaluated` (the file is read by COCOeval and the calibration) they are an error; otherwise a
    warning lists them and the data set leaves them out.

    Raises:
        error: naming `source` (a path or a description), the first offending record and what to do.
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
    for section, what in (("images", "picture"), ("categories", "category")):
        if not data[section]:
            raise error(f"{source}: {section!r} is empty; a data set needs at least one {what}")
    sizes = _image_sizes(data["images"], source, error)
    cat_ids = {cat["id"] for cat in data["categories"]}
    if len(cat_ids) != len(data["categories"]):
        raise error(f"{source}: duplicate category ids in 'categories'")
    bad = []  # annotations with a polygon that cannot be rasterised
    for ann in data["annotations"]:
        if ann["image_id"] not in sizes:
            raise error(f"{source}: annotation {ann['id']} refers to unknown image_id {ann['image_id']}")
        if ann["category_id"] not in cat_ids:
            raise error(
                f"{source}: annotation {ann['id']} refers to unknown category_id {ann['category_id']}"
            )
        if not _check_geometry(ann, sizes[ann["image_id"]], source, error):
            bad.append(ann)
    if bad and evaluated:
        raise error(polygon_message(bad, source, "COCOeval cannot score them"))
    if bad:
        log.warning(polygon_message(bad, source, "training leaves those polygons out"))
    return data if isinstance(data, dict) else dict(data)


def _image_sizes(images: list[Mapping], source: Any, error: type[Exception]) -> dict[Any, tuple[int, int]]:
    """Return {image id: (height, width)}; raise on a duplicate id or a size that is not a pixel count."""
    sizes = {}
    for img in images:
        for key in ("height", "width"):
            value = img[key]
            if not (_is_finite_number(value) and value == int(value) and value >= 1):
                raise error(
                    f"{source}: image {img['id']} has {key} {value!r}; height and width must be positive "
                    f"whole numbers of pixels (the picture's size)"
                )
        sizes[img["id"]] = (int(img["height"]), int(img["width"]))
    if len(sizes) != len(images):
        raise error(f"{source}: duplicate image ids in 'images'")
    return sizes


def _is_finite_number(value: Any) -> bool:
    """Return True for an int or float (not a bool) that is finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite_numbers(values: Any, length: int | None = None) -> bool:
    """Return True when `values` is a list or tuple (of `length` items) of finite numbers."""
    if not isinstance(values, (list, tuple)) or (length is not None and len(values) != length):
        return False
    try:
        return all(map(math.isfinite, values))
    except TypeError:  # an item that is not a number
        return False


def _check_geometry(ann: Mapping, size: tuple[int, int], source: Any, error: type[Exception]) -> bool:
    """Raise `error` when the bbox, area or segmentation of `ann` (on an image of `size`) is malformed;
    return False when its polygons cannot all be rasterised (see `usable_polygon`), else True."""

    def fail(problem: str) -> Exception:
        return error(f"{source}: annotation {ann['id']} {problem}; fix or delete annotation {ann['id']}")

    if "bbox" in ann and not _finite_numbers(ann["bbox"], 4):
        raise fail(f"has a malformed 'bbox' {ann['bbox']!r}: expected [x, y, width, height], finite numbers")
    if "area" in ann and not (_is_finite_number(ann["area"]) and ann["area"] >= 0):
        raise fail(f"has 'area' {ann['area']!r}: it must be a finite number >= 0")
    if "iscrowd" in ann and not (isinstance(ann["iscrowd"], (int, float)) and ann["iscrowd"] in (0, 1)):
        raise fail(f"has 'iscrowd' {ann['iscrowd']!r}: it must be 0 (an instance) or 1 (a crowd region)")
    segm = ann.get("segmentation")
    if segm is None:
        return True
    if isinstance(segm, list):
        try:
            usable = [usable_polygon(p) for p in segm]  # every polygon checked: all raise alike
        except TypeError:  # not a list of numbers
            raise fail(
                "has a malformed 'segmentation': polygons must be lists of numbers "
                "[[x0, y0, x1, y1, ...], ...] (a single flat list needs its own brackets)"
            ) from None
        return bool(usable) and all(usable)
    if not (isinstance(segm, Mapping) and "counts" in segm and "size" in segm):
        raise fail(
            "has a malformed 'segmentation': expected polygons [[x0, y0, ...], ...] or an RLE "
            "{'size': [height, width], 'counts': ...}"
        )
    height, width = size
    if not (isinstance(segm["size"], (list, tuple)) and [*segm["size"]] == [height, width]):
        raise fail(
            f"has RLE size {segm['size']!r} but image {ann['image_id']} is {height}x{width} (height x "
            f"width); the RLE must be of its own picture"
        )
    counts = segm["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise fail("has RLE counts that are not whole numbers >= 0")
        if sum(counts) != height * width:
            raise fail(
                f"has uncompressed RLE counts covering {sum(counts)} pixels, but its image "
                f"{ann['image_id']} is {height}x{width} = {height * width} pixels"
            )
    elif not isinstance(counts, (str, bytes)) or not counts:
        raise fail(f"has RLE counts of type {type(counts).__name__}, not a list or a string")
    return True


def usable_polygon(polygon: list) -> bool:
    """Return True when a polygon can be rasterised: an even number >= 6 of finite coordinates.

    Raises:
        TypeError: when `polygon` is not a list of numbers.
    """
    if not isinstance(polygon, list):
        raise TypeError(f"a polygon must be a list, got {type(polygon).__name__}")
    return all(map(math.isfinite, polygon)) and len(polygon) >= 6 and len(polygon) % 2 == 0


def polygon_message(bad: list[Mapping], source: Any, consequence: str) -> str:
    """Return the one-line message about the annotations `bad` of `source` with unusable polygons."""
    first = bad[0]
    points = [len(p) / 2 for p in first["segmentation"] if not usable_polygon(p)]
    shape = f"a polygon of {points[0]:g} point{'' if points[0] == 1 else 's'}" if points else "no polygon"
    ids = ", ".join(str(a["id"]) for a in bad[:_MAX_IDS]) + (" ..." if len(bad) > _MAX_IDS else "")
    more = f" ({len(bad)} such annotations: ids {ids})" if len(bad) > 1 else ""
    return (
        f"{source}: annotation {first['id']} (image {first['image_id']}) has {shape}{more}; a polygon needs "
        f"at least 3 (x, y) points with finite coordinates and {consequence}: fix those polygons or "
        f"delete them (or their annotations) from the file"
    )


def coco_from_dict(data: dict) -> COCO:
    """Return a pycocotools `COCO` indexed over `data` (its progress prints silenced)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco(path: str | os.PathLike, evaluated: bool = False) -> COCO:
    """Return a pycocotools `COCO` for a validated COCO instances JSON file.

    `evaluated`: unusable polygons are an error (see `validate_coco_instances`); by default they are
    reported with a warning and the data set leaves them out.

    Raises:
        DatasetError: naming the file when it is missing, malformed or lacks required keys.
    """
    data = read_json(path, what="annotation file", error=DatasetError)
    return coco_from_dict(validate_coco_instances(data, path, evaluated=evaluated))
