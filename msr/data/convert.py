"""Converters to COCO instances dicts (the ``msr-convert`` command line is ``msr.cli.convert``).

- ``via``: VGG Image Annotator JSON (1.x, as the balloon set, or a 2.x project file).
- ``masks``: instance label PNGs (one per picture; pixel value = instance id, 0 = background).

Image ``file_name`` entries are relative to the image folder; image sizes are read from the
image files; image ids are 1..N in file-name order and category ids 1..K in name order.

Annotation tools show a photo with an EXIF orientation turned upright, and regions drawn there are in
the upright picture's coordinates: the converters give every picture its upright size, and the COCO file
says so (``info.exif_orientation: "apply"``), so that msr's data sets read its pictures upright (see
msr.data.orientation).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from msr.data.image_io import IMAGE_EXTENSIONS, PictureHeader, read_picture_header
from msr.data.orientation import INFO_KEY
from msr.data.segmentation import mask_to_rle, rle_bbox_xywh
from msr.errors import DatasetError
from msr.files import read_json

logger = logging.getLogger(__name__)

_ELLIPSE_POINTS = 32


def _polygon_area(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Return the area enclosed by a polygon (shoelace formula), as COCO's polygon areas are."""
    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _coco_dict(images: list[dict], annotations: list[dict], names: Sequence[str], description: str) -> dict:
    """Return a COCO instances dict; annotation ``category`` names become ids 1..K (sorted names); its
    ``info`` says that sizes and regions are those of the upright pictures."""
    cat_ids = {name: i + 1 for i, name in enumerate(sorted(set(names)))}
    for i, ann in enumerate(annotations):
        ann["id"] = i + 1
        ann["category_id"] = cat_ids[ann.pop("category")]
    return {
        "info": {"description": description, INFO_KEY: "apply"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": ""} for name, cid in cat_ids.items()],
    }


# -- VIA -----------------------------------------------------------------------------------------


def _upright_header(path: Path, tagged: list[str]) -> PictureHeader:
    """Return the header of the picture at ``path``; add its name to ``tagged`` when it carries an EXIF
    orientation."""
    header = read_picture_header(path)
    if header.tagged:
        tagged.append(path.name)
    return header


def _say_tagged(source: Path, tagged: list[str], total: int) -> None:
    """Log how many of the ``total`` pictures converted from ``source`` carry an EXIF orientation."""
    if tagged:
        logger.info(
            "%s: %d of %d pictures carry an EXIF orientation (first: %s); their sizes and regions are "
            "those of the upright picture, as annotation tools show it",
            source,
            len(tagged),
            total,
            tagged[0],
        )


def _via_region_polygon(shape: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    """Return the outline ``(xs, ys)`` of a VIA region in pixel-index coordinates, or None if unsupported."""
    name = shape.get("name")
    if name == "polygon":
        return [float(x) for x in shape["all_points_x"]], [float(y) for y in shape["all_points_y"]]
    if name == "rect":
        x, y, w, h = (float(shape[k]) for k in ("x", "y", "width", "height"))
        return [x, x + w, x + w, x], [y, y, y + h, y + h]
    if name in ("circle", "ellipse"):
        cx, cy = float(shape["cx"]), float(shape["cy"])
        rx = float(shape["r"]) if name == "circle" else float(shape["rx"])
        ry = float(shape["r"]) if name == "circle" else float(shape["ry"])
        theta = float(shape.get("theta", 0.0))
        t = np.linspace(0, 2 * math.pi, _ELLIPSE_POINTS, endpoint=False)
        xs = cx + rx * np.cos(t) * math.cos(theta) - ry * np.sin(t) * math.sin(theta)
        ys = cy + rx * np.cos(t) * math.sin(theta) + ry * np.sin(t) * math.cos(theta)
        return xs.tolist(), ys.tolist()
    return None


def _via_category(region: Mapping[str, Any], default: str, attribute: str | None) -> str:
    """Return a region's category: ``region_attributes[attribute]`` if set, else ``default``."""
    if attribute is None:
        return default
    value = region.get("region_attributes", {}).get(attribute)
    if isinstance(value, dict):  # VIA checkbox attributes: {"name": true, ...}
        value = next((k for k, v in value.items() if v), None)
    return str(value) if value not in (None, "") else default


def via_to_coco(
    via_json: str | Path,
    image_dir: str | Path | None = None,
    category: str = "object",
    category_attribute: str | None = None,
) -> dict:
    """Return a COCO instances dict converted from a VIA annotation file.

    Polygons, rectangles, circles and ellipses become polygons (others are skipped and logged).
    VIA stores integer pixel indices; 0.5 is added so outlines pass through pixel centres in COCO's
    continuous coordinates. ``area`` is the polygon area (as COCO's), ``bbox`` its extent.
    Every region gets ``category`` unless ``category_attribute`` names a region attribute holding
    the class. ``image_dir`` defaults to the JSON's folder; image sizes are read from the files.

    Raises:
        DatasetError: naming the file when the JSON is malformed or an image is missing/unreadable.
    """
    via_json = Path(via_json)
    image_dir = Path(image_dir) if image_dir is not None else via_json.parent
    data = read_json(via_json, what="VIA annotation file", error=DatasetError)
    if isinstance(data, dict) and "_via_img_metadata" in data:  # VIA 2.x project file
        data = data["_via_img_metadata"]
    if not isinstance(data, dict):
        raise DatasetError(f"{via_json}: expected a VIA object keyed by image, got {type(data).__name__}")
    entries = []
    for key, entry in data.items():
        if not isinstance(entry, dict) or "filename" not in entry:
            raise DatasetError(f"{via_json}: entry {key!r} is missing required key 'filename'")
        regions = entry.get("regions", {})
        entries.append(
            (str(entry["filename"]), list(regions.values()) if isinstance(regions, dict) else regions)
        )
    entries.sort(key=lambda e: e[0])

    if not entries:
        raise DatasetError(f"{via_json}: lists no pictures; nothing to convert (is it the right VIA file?)")
    images, annotations, names, skipped, tagged = [], [], [], 0, []
    for image_id, (file_name, regions) in enumerate(entries, start=1):
        height, width = _upright_header(image_dir / file_name, tagged).size(upright=True)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for number, region in enumerate(regions):
            try:
                outline = _via_region_polygon(region["shape_attributes"])
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetError(f"{via_json}: malformed region of {file_name}: {exc!r}") from exc
            if outline is None or len(outline[0]) < 3 or len(outline[0]) != len(outline[1]):
                skipped += 1
                continue
            where = f"{via_json}: region {number} of {file_name}"
            polygon = _inside_picture(outline, height, width, where)
            if polygon is None:
                skipped += 1
                continue
            xs, ys = polygon
            x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
            name = _via_category(region, category, category_attribute)
            names.append(name)
            annotations.append(
                {
                    "image_id": image_id,
                    "category": name,
                    "segmentation": [[c for xy in zip(xs, ys) for c in xy]],
                    "area": _polygon_area(xs, ys),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "iscrowd": 0,
                }
            )
    _say_tagged(via_json, tagged, len(images))
    if skipped:
        logger.warning("%s: skipped %d regions with unsupported or degenerate shapes", via_json, skipped)
    if not annotations:
        raise DatasetError(
            f"{via_json}: no region could be converted ({len(images)} pictures, {skipped} regions skipped); "
            f"nothing to train on: annotate polygons, rectangles, circles or ellipses"
        )
    return _coco_dict(images, annotations, names, f"converted from {via_json.name}")


def _inside_picture(
    outline: tuple[list[float], list[float]], height: int, width: int, where: str
) -> tuple[list[float], list[float]] | None:
    """Return a VIA outline in COCO coordinates (pixel centres: +0.5), clipped to the picture when a point
    lies more than a pixel outside it (warned), or None (warned) when nothing of it has an area."""
    xs = [x + 0.5 for x in outline[0]]
    ys = [y + 0.5 for y in outline[1]]
    if _polygon_area(xs, ys) <= 0:
        logger.warning("%s has zero area (no width or no height); skipped", where)
        return None
    if min(xs) < -1 or min(ys) < -1 or max(xs) > width + 1 or max(ys) > height + 1:
        xs = [min(max(x, 0.0), float(width)) for x in xs]
        ys = [min(max(y, 0.0), float(height)) for y in ys]
        if _polygon_area(xs, ys) <= 0:
            logger.warning("%s lies outside the %dx%d picture; skipped", where, width, height)
            return None
        logger.warning("%s reaches outside the %dx%d picture; clipped to its border", where, width, height)
    return xs, ys


# -- instance label PNGs -------------------------------------------------------------------------


def _read_label_image(path: Path) -> np.ndarray:
    """Return an instance label image as an [H, W] integer array (palette indices kept as ids)."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I", "I;16", "I;16L", "I;16B", "1"):
                raise DatasetError(
                    f"instance mask {path} has mode {image.mode}; expected a single-channel label image"
                )
            return np.asarray(image).astype(np.int64)
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"cannot read instance mask {path}: {exc}") from exc


def _find_image(image_dir: Path, relative_stem: Path) -> Path:
    """Return the picture ``image_dir/relative_stem.<image extension>`` (error names what was sought)."""
    folder = image_dir / relative_stem.parent
    candidates = (
        sorted(p for p in folder.glob(f"{relative_stem.name}.*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if folder.is_dir()
        else []
    )
    if not candidates:
        raise DatasetError(
            f"no image found for mask {relative_stem}: looked for {folder / relative_stem.name}.*"
        )
    return candidates[0]


def _instance_category(
    category_map: Mapping[str, Mapping[str, str]] | None,
    stem: str,
    value: int,
    default: str | None,
    mask: Path,
) -> str:
    """Return the category of instance ``value`` in mask ``stem`` from the map, else ``default``."""
    if category_map is not None:
        for key in (stem, "*"):
            per_image = category_map.get(key)
            if per_image is not None and str(value) in per_image:
                return str(per_image[str(value)])
    if default is None:
        raise DatasetError(f"{mask}: no category for instance value {value} (give --category or a mapping)")
    return default


def masks_to_coco(
    mask_dir: str | Path,
    image_dir: str | Path,
    category: str | None = None,
    category_map: Mapping[str, Mapping[str, str]] | None = None,
) -> dict:
    """Return a COCO instances dict converted from instance label PNGs.

    Each ``*.png`` under ``mask_dir`` (recursively) labels the picture with the same relative path
    and stem under ``image_dir`` (any image extension): value 0 is background, every other value
    one instance, stored as compressed RLE with its pixel ``area`` and tight ``bbox``. Categories
    come from ``category_map`` — ``{"<mask stem or relative stem>": {"<value>": "<name>"}}``, with
    ``"*"`` applying to every mask — and fall back to ``category``.

    Raises:
        DatasetError: naming the file when a mask has no picture, differs in size or is unreadable.
    """
    mask_dir, image_dir = Path(mask_dir), Path(image_dir)
    if not mask_dir.is_dir():
        raise DatasetError(f"mask folder not found: {mask_dir}")
    if category is None and category_map is None:
        raise DatasetError("give a category name or a category map for the instance masks")
    mask_files = sorted(p for p in mask_dir.rglob("*") if p.is_file() and p.suffix.lower() == ".png")
    if not mask_files:
        raise DatasetError(f"no instance mask PNGs found under {mask_dir}")
    images, annotations, names, tagged = [], [], [], []
    for image_id, mask_path in enumerate(mask_files, start=1):
        relative_stem = mask_path.relative_to(mask_dir).with_suffix("")
        image_path = _find_image(image_dir, relative_stem)
        header = _upright_header(image_path, tagged)
        height, width = header.size(upright=True)
        labels = _read_label_image(mask_path)
        if labels.shape != (height, width):
            turned = f" upright (EXIF orientation {header.orientation})" if header.tagged else ""
            raise DatasetError(
                f"instance mask {mask_path} is {labels.shape[1]}x{labels.shape[0]} but image {image_path} "
                f"is {width}x{height}{turned}"
            )
        file_name = image_path.relative_to(image_dir).as_posix()
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for value in np.unique(labels):
            if value == 0:
                continue
            mask = labels == value
            rle = mask_to_rle(mask)
            name = _instance_category(category_map, relative_stem.as_posix(), int(value), category, mask_path)
            names.append(name)
            annotations.append(
                {
                    "image_id": image_id,
                    "category": name,
                    "segmentation": rle,
                    "area": int(mask.sum()),
                    "bbox": rle_bbox_xywh(rle),
                    "iscrowd": 0,
                }
            )
    _say_tagged(mask_dir, tagged, len(images))
    if not annotations:
        raise DatasetError(
            f"no instance in the {len(mask_files)} masks under {mask_dir} (every pixel is 0, background); "
            f"nothing to train on: check that the masks hold instance ids"
        )
    return _coco_dict(images, annotations, names, f"converted from instance masks in {mask_dir.name}")
