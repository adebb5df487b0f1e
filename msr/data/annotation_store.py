"""The annotations of a COCO instances file packed into flat NumPy arrays: memory that workers share.

A data set that keeps its annotations as Python dicts and lists makes every forked DataLoader worker
copy them bit by bit: reading a Python object writes its reference count, and the page it lives on
is copied (copy-on-read). `AnnotationStore` keeps a handful of NumPy arrays instead, whatever the
number of pictures (detectron2 serialises its data set into byte buffers for the same reason), so
reading an image's annotations writes nothing that the parent process owns.

Layout: images in file order (`image_ids`, `heights`, `widths`, file names in one UTF-8 buffer), and
their annotations contiguous (`ann_offsets`): `ann_ids`, `bboxes` (float32, as added: COCO xywh;
its owner may convert them in place), `labels`, `iscrowd`, `areas` (with `has_area`), and the
segmentation of each annotation either as polygons (float64 coordinates in one buffer, split by
`part_offsets` and `coord_offsets`) or as a compressed RLE (bytes in one buffer, `rle_index` >= 0).
Coordinates are kept as float64, so the polygons given back are the very floats of the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from msr.errors import DatasetError


@dataclass(frozen=True)
class ImageAnnotations:
    """The annotations of one image (arrays are copies the caller may keep or modify)."""

    ann_ids: np.ndarray  # [N] int64
    bboxes: np.ndarray  # [N, 4] float32, as the store holds them
    labels: np.ndarray  # [N] int64
    iscrowd: np.ndarray  # [N] int64
    areas: np.ndarray  # [N] float64, the file's `area` where `has_area`
    has_area: np.ndarray  # [N] bool
    segmentations: list[Any]  # per annotation: a list of polygons, or a compressed RLE dict

    def __len__(self) -> int:
        return len(self.ann_ids)


def _offsets(lengths: Sequence[int]) -> np.ndarray:
    """Return the [n + 1] int64 start offsets of consecutive runs of the given lengths."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=out[1:])
    return out


def _image_id(value: Any) -> int:
    """Return an image id as an int; DatasetError when it is not an integer."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer)) or int(value) != value:
        raise DatasetError(f"image id {value!r} is not an integer")
    return int(value)


class AnnotationStoreBuilder:
    """Collects images and their annotations one by one; `build` packs them into an AnnotationStore."""

    def __init__(self) -> None:
        self._images: list[tuple[int, str, int, int]] = []
        self._ann_counts: list[int] = []
        self._ann_ids: list[int] = []
        self._bboxes: list[float] = []
        self._labels: list[int] = []
        self._iscrowd: list[int] = []
        self._areas: list[float] = []
        self._has_area: list[bool] = []
        self._parts: list[int] = []  # polygons per annotation (0 for RLE)
        self._coord_counts: list[int] = []
        self._coords: list[float] = []
        self._rle_index: list[int] = []
        self._rles: list[bytes] = []
        self._rle_sizes: list[tuple[int, int]] = []

    def add_image(self, image_id: Any, file_name: str, height: int, width: int) -> None:
        """Start a new image; the annotations added next belong to it."""
        self._images.append((_image_id(image_id), str(file_name), int(height), int(width)))
        self._ann_counts.append(0)

    def add_annotation(
        self,
        ann_id: int,
        bbox: Sequence[float],
        label: int,
        iscrowd: int,
        area: float | None,
        segmentation: list[list[float]] | Mapping[str, Any],
    ) -> None:
        """Add an annotation to the last image: `segmentation` as polygons, or a compressed RLE dict."""
        self._ann_counts[-1] += 1
        self._ann_ids.append(int(ann_id))
        self._bboxes.extend(bbox)
        self._labels.append(int(label))
        self._iscrowd.append(int(iscrowd))
        self._has_area.append(area is not None)
        self._areas.append(0.0 if area is None else float(area))
        if isinstance(segmentation, Mapping):
            counts = segmentation["counts"]
            self._rle_index.append(len(self._rles))
            self._rles.append(counts.encode("ascii") if isinstance(counts, str) else bytes(counts))
            height, width = segmentation["size"]
            self._rle_sizes.append((int(height), int(width)))
            self._parts.append(0)
            return
        self._rle_index.append(-1)
        self._parts.append(len(segmentation))
        for polygon in segmentation:
            self._coord_counts.append(len(polygon))
            self._coords.extend(polygon)

    def build(self) -> AnnotationStore:
        """Return the AnnotationStore of everything added."""
        ids, names, heights, widths = zip(*self._images) if self._images else ((), (), (), ())
        encoded = [name.encode("utf-8") for name in names]
        rles = self._rles
        return AnnotationStore(
            image_ids=np.asarray(ids, dtype=np.int64),
            heights=np.asarray(heights, dtype=np.int64),
            widths=np.asarray(widths, dtype=np.int64),
            name_offsets=_offsets([len(n) for n in encoded]),
            names=np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(),
            ann_offsets=_offsets(self._ann_counts),
            ann_ids=np.asarray(self._ann_ids, dtype=np.int64),
            bboxes=np.asarray(self._bboxes, dtype=np.float32).reshape(-1, 4),
            labels=np.asarray(self._labels, dtype=np.int64),
            iscrowd=np.asarray(self._iscrowd, dtype=np.int64),
            areas=np.asarray(self._areas, dtype=np.float64),
            has_area=np.asarray(self._has_area, dtype=bool),
            part_offsets=_offsets(self._parts),
            coord_offsets=_offsets(self._coord_counts),
            coords=np.asarray(self._coords, dtype=np.float64),
            rle_index=np.asarray(self._rle_index, dtype=np.int64),
            rle_offsets=_offsets([len(r) for r in rles]),
            rle_bytes=np.frombuffer(b"".join(rles), dtype=np.uint8).copy(),
            rle_sizes=np.asarray(self._rle_sizes, dtype=np.int64).reshape(-1, 2),
        )


@dataclass(frozen=True, eq=False)
class AnnotationStore(Mapping):
    """Images and annotations of a COCO instances file in flat arrays (see the module docstring).

    As a Mapping, `store[image_id]` is the image's annotations in the layout of a per-image record:
    `{"anns": [{"id", "segmentation", "iscrowd", "area" if given}], "boxes": [N, 4] float32,
    "labels": [N] int64, "iscrowd": [N] int64}` (built on each access, for inspection).
    """

    image_ids: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    name_offsets: np.ndarray
    names: np.ndarray
    ann_offsets: np.ndarray
    ann_ids: np.ndarray
    bboxes: np.ndarray
    labels: np.ndarray
    iscrowd: np.ndarray
    areas: np.ndarray
    has_area: np.ndarray
    part_offsets: np.ndarray
    coord_offsets: np.ndarray
    coords: np.ndarray
    rle_index: np.ndarray
    rle_offsets: np.ndarray
    rle_bytes: np.ndarray
    rle_sizes: np.ndarray

    def __post_init__(self) -> None:
        order = np.argsort(self.image_ids, kind="stable")
        if len(order) > 1 and (np.diff(self.image_ids[order]) == 0).any():
            raise DatasetError("duplicate image ids")
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_sorted_ids", self.image_ids[order])

    @property
    def nbytes(self) -> int:
        """Return the bytes held by the arrays."""
        names = [*self.__dataclass_fields__, "_order", "_sorted_ids"]
        return sum(getattr(self, name).nbytes for name in names)

    @property
    def num_annotations(self) -> int:
        """Return the number of annotations of all images."""
        return len(self.ann_ids)

    def position(self, image_id: int) -> int:
        """Return the position of `image_id` in file order; KeyError when unknown."""
        i = int(np.searchsorted(self._sorted_ids, image_id))
        if i == len(self._sorted_ids) or self._sorted_ids[i] != image_id:
            raise KeyError(image_id)
        return int(self._order[i])

    def file_name(self, position: int) -> str:
        """Return the file name of the image at `position`."""
        start, end = self.name_offsets[position], self.name_offsets[position + 1]
        return self.names[start:end].tobytes().decode("utf-8")

    def size(self, position: int) -> tuple[int, int]:
        """Return (height, width) of the image at `position`, as the file gives them."""
        return int(self.heights[position]), int(self.widths[position])

    def count(self, position: int) -> int:
        """Return the number of annotations of the image at `position`."""
        return int(self.ann_offsets[position + 1] - self.ann_offsets[position])

    def _segmentations(self, a: int, b: int) -> list[Any]:
        """Return the segmentations of annotations a..b-1: polygons (lists of floats) or compressed RLE."""
        rles = self.rle_index[a:b].tolist()
        parts = self.part_offsets[a : b + 1].tolist()
        bounds = self.coord_offsets[parts[0] : parts[-1] + 1].tolist()
        coords = self.coords[bounds[0] : bounds[-1]]
        base_part, base = parts[0], bounds[0]
        out: list[Any] = []
        for k, rle in enumerate(rles):
            if rle >= 0:
                start, end = self.rle_offsets[rle : rle + 2].tolist()
                counts = self.rle_bytes[start:end].tobytes()
                out.append({"size": self.rle_sizes[rle].tolist(), "counts": counts})
                continue
            polygons = range(parts[k] - base_part, parts[k + 1] - base_part)
            out.append([coords[bounds[j] - base : bounds[j + 1] - base].tolist() for j in polygons])
        return out

    def annotations(self, position: int) -> ImageAnnotations:
        """Return the annotations of the image at `position`, in file order."""
        a, b = self.ann_offsets[position : position + 2].tolist()
        return ImageAnnotations(
            ann_ids=self.ann_ids[a:b].copy(),
            bboxes=self.bboxes[a:b].copy(),
            labels=self.labels[a:b].copy(),
            iscrowd=self.iscrowd[a:b].copy(),
            areas=self.areas[a:b].copy(),
            has_area=self.has_area[a:b].copy(),
            segmentations=self._segmentations(a, b),
        )

    def __getitem__(self, image_id: int) -> dict[str, Any]:
        anns = self.annotations(self.position(image_id))
        records = []
        for i, segmentation in enumerate(anns.segmentations):
            record = {
                "id": int(anns.ann_ids[i]),
                "segmentation": segmentation,
                "iscrowd": int(anns.iscrowd[i]),
            }
            if anns.has_area[i]:
                record["area"] = float(anns.areas[i])
            records.append(record)
        return {"anns": records, "boxes": anns.bboxes, "labels": anns.labels, "iscrowd": anns.iscrowd}

    def __iter__(self) -> Iterator[int]:
        return iter(self.image_ids.tolist())

    def __len__(self) -> int:
        return len(self.image_ids)
