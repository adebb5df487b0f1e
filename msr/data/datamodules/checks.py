"""What the data modules check when they build their data sets, before any training step.

- loader options: batch sizes of at least 1, a number of workers of at least 0;
- a training set with no usable instance (no annotation, only crowd regions, no picture) is an error,
  not an "epoch" of no batches;
- an evaluation set (val, test) must hold pictures and polygons that COCOeval can score;
- every picture of every split must have the size its annotation file gives, in the reading of EXIF
  orientations the data set uses (their headers are read now, not when the picture is first loaded; a
  quarter turn whose size fits the other reading names `data.exif_orientation`), and a split with tagged
  pictures says once how many and which reading it uses (msr.data.orientation);
- a picture that cannot be decoded when it is loaded (a truncated file) stops the run with its name and
  a hint; with `skip_unreadable` it is skipped with a warning naming it, and the sample of the next
  readable picture is used instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from msr.data.coco import CocoInstanceDataset
from msr.data.coco_json import validate_coco_instances
from msr.data.orientation import orientation_mismatch, tagged_summary
from msr.distributed import get_rank
from msr.errors import ConfigError, DatasetError
from msr.files import read_json

log = logging.getLogger(__name__)


def check_loader_options(batch_size: Any, eval_batch_size: Any, num_workers: Any) -> None:
    """Raise ConfigError naming the `data.` key whose value cannot work (sizes >= 1, workers >= 0)."""
    for key, value, least in (
        ("batch_size", batch_size, 1),
        ("eval_batch_size", eval_batch_size, 1),
        ("num_workers", num_workers, 0),
    ):
        if value is None and key == "eval_batch_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"data.{key} must be a whole number >= {least}, got {value!r}")


#: Annotation files already validated as evaluation files: (path, size, mtime) -> categories.
_EVALUATED: dict[tuple[str, int, int], list[tuple[int, str]]] = {}


def category_names(ann_file: str | Path, evaluated: bool = True) -> list[tuple[int, str]]:
    """Return ``(category id, name)`` pairs of a valid COCO instances file, sorted by id.

    `evaluated`: the file is an evaluation split's (its polygons must be scorable, see
    `validate_coco_instances`); such a file is read and validated once per process.
    """
    stat = Path(ann_file).stat() if Path(ann_file).is_file() else None
    key = (str(Path(ann_file).resolve()), stat.st_size, stat.st_mtime_ns) if stat else None
    if evaluated and key in _EVALUATED:
        return _EVALUATED[key]
    data = read_json(ann_file, "annotation file", DatasetError)
    data = validate_coco_instances(data, ann_file, evaluated=evaluated)
    try:
        names = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{ann_file}: malformed 'categories' ({exc})") from exc
    if evaluated and key is not None:
        _EVALUATED[key] = names
    return names


def check_training_set(dataset: CocoInstanceDataset) -> None:
    """Raise DatasetError when the training set has no picture with a usable instance."""
    if len(dataset) > 0:
        return
    words = {
        "empty_images_dropped": "pictures without an instance",
        "crowd": "crowd regions",
        "degenerate_boxes": "boxes under the minimum size",
        "empty_polygons": "annotations without a usable polygon",
    }
    stats = ", ".join(f"{v} {words.get(k, k)}" for k, v in dataset.stats.items() if v)
    dropped = f" (left out: {stats})" if stats else ""
    raise DatasetError(
        f"{dataset.ann_file}: no training picture with a usable instance{dropped}; training needs pictures "
        f"with non-crowd instances that have a box and a mask: check the file (or what wrote it)"
    )


def check_evaluation_set(dataset: CocoInstanceDataset, check_sizes: bool = True) -> None:
    """Raise DatasetError unless `dataset` (its file validated by `category_names(..., evaluated=True)`)
    has pictures and, with `check_sizes`, picture headers that match the file's sizes (`check_pictures`)."""
    if len(dataset) == 0:
        raise DatasetError(f"{dataset.ann_file}: no picture to evaluate; check the file and its image folder")
    check_pictures(dataset, check_sizes)


def check_pictures(dataset: CocoInstanceDataset, check_sizes: bool = True) -> None:
    """Read the header of every picture of `dataset`; return None.

    With `check_sizes`, raise DatasetError naming the first picture that cannot be read or whose size, in
    the data set's reading of EXIF orientations, differs from its annotation file's. Without it (pictures
    already checked by `skip_unreadable`) unreadable headers are passed over. On rank 0, log once how many
    pictures carry an EXIF orientation and which reading is used.
    """
    tagged: dict[Path, int] = {}
    hint = "(data.skip_unreadable=true skips such pictures)"
    for image_id in dataset.ids:
        path = dataset.image_path(image_id)
        try:
            header = dataset.header(image_id)
        except DatasetError as err:
            if not check_sizes:
                continue
            raise DatasetError(f"{err} {hint}") from None
        if header.tagged:
            tagged[path] = header.orientation
        if not check_sizes:
            continue
        expected = dataset.image_size(image_id)
        turned = orientation_mismatch(path, header, expected, dataset.reading, dataset.ann_file, image_id)
        if turned is not None:
            raise DatasetError(turned)
        found = header.size(dataset.upright)
        if found != expected:
            raise DatasetError(
                f"image {path} is {found[1]}x{found[0]} (WxH) but {dataset.ann_file} says "
                f"{expected[1]}x{expected[0]} for image {image_id}: correct its size in the file or replace "
                f"the picture {hint}"
            )
    if tagged and get_rank() == 0:
        reading = (dataset.exif_orientation, dataset.reading)
        log.warning(tagged_summary(dataset.ann_file, tagged, len(dataset.ids), *reading))


class UnreadablePictures(Dataset):
    """A data set whose samples that fail to load (DatasetError: an unreadable or resized picture) are,
    with `skip`, replaced by the next sample that loads (each skipped picture named once in a warning),
    and otherwise raise that error with a hint to `data.skip_unreadable`.

    Other attributes are those of the wrapped data set. An evaluation never sees a skipped picture, so
    it is left out of the scores rather than counted as missed.
    """

    def __init__(self, dataset: Dataset, skip: bool) -> None:
        self.dataset = dataset
        self.skip = bool(skip)
        self.skipped: set[int] = set()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Any:
        """Return sample `index`, or with `skip` the next one (wrapping around) that loads."""
        size = len(self.dataset)
        for offset in range(size if self.skip else 1):
            current = (index + offset) % size
            try:
                return self.dataset[current]
            except DatasetError as err:
                if not self.skip:
                    raise DatasetError(f"{err} (data.skip_unreadable=true skips such pictures)") from None
                if current not in self.skipped:
                    self.skipped.add(current)
                    log.warning("%s; skipped (data.skip_unreadable=true)", err)
        raise DatasetError("data.skip_unreadable=true: no picture of the data set could be read")
