"""COCO instances data set (pycocotools) yielding torchvision detection samples with masks."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from msr.data.annotation_store import AnnotationStore, AnnotationStoreBuilder
from msr.data.coco_json import load_coco
from msr.data.image_io import PictureHeader, load_rgb_image, read_picture_header
from msr.data.orientation import orientation_mismatch, resolve_reading
from msr.data.segmentation import (
    clean_polygons,
    decode_masks,
    is_polygon_segmentation,
    is_rle_segmentation,
    rle_area,
    segmentation_to_rle,
)
from msr.errors import DatasetError

logger = logging.getLogger(__name__)

#: Name given to label 0 in ``class_names``.
BACKGROUND = "__background__"

Transform = Callable[[Any, dict], tuple[Any, dict]]


def to_float_image(image: torch.Tensor) -> tv_tensors.Image:
    """Return ``image`` as a float32 ``tv_tensors.Image`` in [0, 1] (uint8 is divided by 255)."""
    return tv_tensors.Image(F.to_dtype(torch.as_tensor(image), torch.float32, scale=True))


def _all_usable(polygons: list) -> bool:
    """Return True when ``clean_polygons`` would keep every polygon as it is (a quick check: the sum of
    a polygon's coordinates is finite only when each one is)."""
    try:
        return all(len(p) >= 6 and len(p) % 2 == 0 and math.isfinite(sum(p)) for p in polygons)
    except TypeError:  # not numbers: clean_polygons decides
        return False


def _to_clipped_xyxy(store: AnnotationStore) -> None:
    """Turn the store's COCO xywh boxes into XYXY clipped to their images, in place (float32 throughout)."""
    boxes = store.bboxes
    counts = np.diff(store.ann_offsets)
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, np.repeat(store.widths, counts)[:, None])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, np.repeat(store.heights, counts)[:, None])


def _visible_sides(bbox: list[float], height: int, width: int) -> tuple[float, float]:
    """Return (width, height) of the part of a COCO xywh box inside a `height` x `width` picture (<= 0 when
    the box lies outside it); a box inside gives its own sides exactly."""
    x, y, w, h = map(float, bbox)
    return w - max(0.0, -x) - max(0.0, x + w - width), h - max(0.0, -y) - max(0.0, y + h - height)


class CocoInstanceDataset(Dataset):
    """COCO instances (boxes + masks) read with pycocotools; one sample per image.

    A sample is ``(image, target)``:

    - ``image``: ``tv_tensors.Image`` float32 [3, H, W] in [0, 1] (not normalised).
    - ``target["boxes"]``: ``tv_tensors.BoundingBoxes`` [N, 4] XYXY float32, absolute pixels,
      taken from the annotation ``bbox`` (COCO xywh -> xyxy, clipped to the image). The annotation
      box, not the mask's box, is used because COCO box AP is scored against it; geometric
      transforms move boxes and masks together so they stay consistent.
    - ``target["labels"]``: int64 [N], contiguous labels 1..K (0 is background).
    - ``target["masks"]``: ``tv_tensors.Mask`` uint8 [N, H, W] of 0/1, decoded in ``__getitem__``.
    - ``target["image_id"]``: int, the original COCO image id.
    - ``target["area"]``: float32 [N], the annotation ``area`` (original image pixels).
    - ``target["iscrowd"]``: int64 [N] (all 0 unless ``include_crowd``).
    - ``target["orig_size"]``: ``(H, W)`` of the image on disk, before transforms.

    Crowd regions are excluded from targets by default (they stay in the JSON for evaluation).
    Annotations whose box, clipped to its image, has a side < ``min_box_size`` px (a box lying outside its
    image has none) or without a usable polygon are dropped
    and counted (logged; see ``stats``). Category ids map to labels by sorted id:
    ``cat_id_to_label`` / ``label_to_cat_id``; ``class_names[label]`` names a label.

    The annotations are packed at construction into an ``AnnotationStore`` (flat NumPy arrays, no
    Python object per annotation), so forked DataLoader workers share them instead of copying them;
    no pycocotools index is kept (``coco`` builds one on demand, for inspection).

    Missing images raise ``DatasetError`` at construction (naming the file); unreadable images or
    images whose size differs from the JSON raise it when loaded. With ``skip_unreadable`` every
    image header is checked up front and bad images are skipped instead; ``num_skipped`` and
    ``skipped_files`` report them.

    Pictures with an EXIF orientation are read as ``exif_orientation`` says (see msr.data.orientation):
    ``apply`` turns them upright, ``ignore`` reads the stored pixels, ``auto`` does what the file's
    ``info.exif_orientation`` says (msr-convert's files: apply), else ignore; ``reading`` is the result.
    A picture turned by a quarter whose size in the file fits only the other reading raises
    ``DatasetError`` naming the option.
    """

    def __init__(
        self,
        image_dir: str | Path,
        ann_file: str | Path,
        transforms: Transform | None = None,
        *,
        drop_empty: bool = False,
        include_crowd: bool = False,
        skip_unreadable: bool = False,
        min_box_size: float = 1.0,
        exif_orientation: str = "auto",
    ) -> None:
        self.image_dir = Path(image_dir)
        self.ann_file = Path(ann_file)
        self.transforms = transforms
        self.include_crowd = include_crowd
        if not self.image_dir.is_dir():
            raise DatasetError(f"image folder not found: {self.image_dir} (images of {self.ann_file})")
        coco = load_coco(self.ann_file)
        self.exif_orientation = exif_orientation
        self.reading = resolve_reading(exif_orientation, coco.dataset.get("info"))
        self.upright = self.reading == "apply"

        cat_ids = sorted(coco.cats)
        self.cat_id_to_label: dict[int, int] = {cid: i + 1 for i, cid in enumerate(cat_ids)}
        self.label_to_cat_id: dict[int, int] = {label: cid for cid, label in self.cat_id_to_label.items()}
        self.class_names: list[str] = [BACKGROUND] + [str(coco.cats[c]["name"]) for c in cat_ids]

        self.stats = {"degenerate_boxes": 0, "empty_polygons": 0, "crowd": 0, "empty_images_dropped": 0}
        builder = AnnotationStoreBuilder()
        image_ids = [img["id"] for img in coco.dataset["images"]]
        for info in coco.dataset["images"]:
            builder.add_image(info["id"], info["file_name"], info["height"], info["width"])
            self._add_annotations(builder, info, coco.imgToAnns.get(info["id"], []), min_box_size)
        self._targets: AnnotationStore = builder.build()
        del coco, builder  # the store holds all that is needed
        _to_clipped_xyxy(self._targets)

        if drop_empty:
            kept = [i for i in image_ids if self._targets.count(self._targets.position(i)) > 0]
            self.stats["empty_images_dropped"] = len(image_ids) - len(kept)
            image_ids = kept

        self.skipped_files: list[Path] = []
        self.ids: list[int] = self._check_images(image_ids, skip_unreadable)
        self.num_skipped = len(self.skipped_files)
        self._positions = np.array([self._targets.position(i) for i in self.ids], dtype=np.int64)

        dropped = {k: v for k, v in self.stats.items() if v}
        if dropped:
            logger.info("%s: %d images; dropped %s", self.ann_file, len(self.ids), dropped)

    # -- construction helpers -------------------------------------------------------------------

    def _add_annotations(
        self, builder: AnnotationStoreBuilder, info: dict, anns: list[dict], min_box_size: float
    ) -> None:
        """Add the kept annotations of one image to ``builder``: polygons cleaned, raw RLE compressed."""
        image_id = info["id"]
        height, width = int(info["height"]), int(info["width"])
        for ann in anns:
            crowd = int(ann.get("iscrowd", 0))
            if crowd and not self.include_crowd:
                self.stats["crowd"] += 1
                continue
            if min(_visible_sides(ann["bbox"], height, width)) < min_box_size:
                self.stats["degenerate_boxes"] += 1
                continue
            segm = ann["segmentation"]
            if is_polygon_segmentation(segm):
                if not _all_usable(segm):
                    segm = clean_polygons(segm)
                if not segm:
                    self.stats["empty_polygons"] += 1
                    continue
            elif is_rle_segmentation(segm):
                if [int(s) for s in segm["size"]] != [height, width]:
                    raise DatasetError(
                        f"{self.ann_file}: annotation {ann['id']} has RLE size {segm['size']} but image "
                        f"{image_id} is {height}x{width}"
                    )
                segm = segmentation_to_rle(segm, height, width)  # compressed: kept as is
            else:
                raise DatasetError(f"{self.ann_file}: annotation {ann['id']} has a malformed 'segmentation'")
            try:
                area = float(ann["area"]) if "area" in ann else None
            except (TypeError, ValueError):
                raise DatasetError(
                    f"{self.ann_file}: annotation {ann['id']} has a non-numeric 'area' {ann['area']!r}"
                ) from None
            label = self.cat_id_to_label[ann["category_id"]]
            builder.add_annotation(ann["id"], ann["bbox"], label, crowd, area, segm)

    def _check_images(self, image_ids: list[int], skip_unreadable: bool) -> list[int]:
        """Return the image ids to use; raise on a missing file, or skip bad files if asked."""
        if not skip_unreadable:
            missing = [self.image_path(i) for i in image_ids if not self.image_path(i).is_file()]
            if missing:
                more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
                raise DatasetError(f"image file not found: {missing[0]}{more}, listed in {self.ann_file}")
            return image_ids
        kept = []
        for image_id in image_ids:
            path = self.image_path(image_id)
            try:
                header = self.header(image_id)
            except DatasetError:
                self.skipped_files.append(path)
                continue
            expected = self.image_size(image_id)
            turned = orientation_mismatch(path, header, expected, self.reading, self.ann_file, image_id)
            if turned is not None:  # not a damaged picture: the option is wrong for this file
                raise DatasetError(turned)
            if header.size(self.upright) != expected:
                self.skipped_files.append(path)
                continue
            kept.append(image_id)
        if self.skipped_files:
            logger.warning(
                "%s: skipped %d missing or unreadable images (first: %s)",
                self.ann_file,
                len(self.skipped_files),
                self.skipped_files[0],
            )
        return kept

    # -- public API -------------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Return K + 1: the number of categories plus background."""
        return len(self.class_names)

    @cached_property
    def coco(self) -> Any:
        """Return a pycocotools ``COCO`` of ``ann_file``, loaded on first use (the data set needs none)."""
        return load_coco(self.ann_file)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("coco", None)  # workers started by spawn do not need the pycocotools index
        return state

    def image_size(self, image_id: int) -> tuple[int, int]:
        """Return (height, width) of ``image_id`` as the annotation file gives them (no I/O)."""
        return self._targets.size(self._targets.position(image_id))

    def image_path(self, image_id: int) -> Path:
        """Return the path of the image file of ``image_id``."""
        return self.image_dir / self._targets.file_name(self._targets.position(image_id))

    def header(self, image_id: int) -> PictureHeader:
        """Return the stored size and EXIF orientation of ``image_id``'s picture (reading its header now).

        Raises:
            DatasetError: naming the file when it is missing or not a recognised image.
        """
        return read_picture_header(self.image_path(image_id))

    def aspect_ratios(self) -> list[float]:
        """Return width / height of every image in dataset order (read from the JSON, no I/O)."""
        heights = self._targets.heights[self._positions].tolist()
        widths = self._targets.widths[self._positions].tolist()
        return [float(w) / float(h) for h, w in zip(heights, widths)]

    def __len__(self) -> int:
        return len(self.ids)

    def load_target(self, index: int, height: int, width: int) -> dict[str, Any]:
        """Return the untransformed target dict of sample ``index`` (masks decoded now)."""
        image_id = self.ids[index]
        position = int(self._positions[index])
        anns = self._targets.annotations(position)
        rles = [segmentation_to_rle(s, height, width) for s in anns.segmentations]
        masks = decode_masks(rles, height, width)
        areas = [
            float(a) if given else float(rle_area(r)) for a, given, r in zip(anns.areas, anns.has_area, rles)
        ]
        return {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(anns.bboxes),
                format=tv_tensors.BoundingBoxFormat.XYXY,
                canvas_size=(height, width),
            ),
            "labels": torch.from_numpy(anns.labels),
            "masks": tv_tensors.Mask(torch.from_numpy(masks)),
            "image_id": int(image_id),
            "area": torch.tensor(areas, dtype=torch.float32),
            "iscrowd": torch.from_numpy(anns.iscrowd),
            "orig_size": (height, width),
        }

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        image_id = self.ids[index]
        path = self.image_path(image_id)
        rgb = load_rgb_image(path, upright=self.upright)
        height, width = rgb.shape[:2]
        expected = self._targets.size(int(self._positions[index]))
        if (height, width) != expected:
            header = self.header(image_id)
            turned = orientation_mismatch(path, header, expected, self.reading, self.ann_file, image_id)
            says = f"{self.ann_file} says {expected[1]}x{expected[0]}"
            raise DatasetError(turned or f"image {path} is {width}x{height} (WxH) but {says}")
        image = tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1))  # [3, H, W] uint8
        target = self.load_target(index, height, width)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return to_float_image(image), target
