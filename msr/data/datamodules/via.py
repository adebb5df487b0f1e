"""LightningDataModule over VIA-annotated folders, converted to COCO once into a cache."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from msr.data.convert import via_to_coco
from msr.data.datamodules.coco import CocoDataModule
from msr.data.synthetic import default_cache_dir
from msr.errors import DatasetError
from msr.files import write_json_atomic

#: Part of the cache key of converted files: bumped when the converter writes other files for the same
#: input (2: upright sizes of pictures with an EXIF orientation, `info.exif_orientation`).
CONVERTER_VERSION = 2


class ViaDataModule(CocoDataModule):
    """``CocoDataModule`` over VIA-annotated folders (e.g. Matterport's balloon set).

    ``train_dir`` and ``val_dir`` (default ``root/train`` and ``root/val``) each hold the pictures
    and ``annotation`` (a VIA JSON) whose regions are all of one ``category`` (its name; no default:
    data/balloon.yaml names its set's). On first use each file is converted to COCO (``via_to_coco``)
    into ``cache_dir`` (default ``$MSR_CACHE_DIR/via`` or ``~/.cache/msr/via``), under a name that
    changes whenever the VIA file changes, and the converted files are reused afterwards. The converted
    files give the upright sizes of pictures with an EXIF orientation and say so, so that with
    ``exif_orientation=auto`` (the default) their pictures are read upright (msr.data.orientation).
    """

    def __init__(
        self,
        root: str | None = None,
        train_dir: str | None = None,
        val_dir: str | None = None,
        annotation: str = "via_region_data.json",
        *,
        category: str,
        category_attribute: str | None = None,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if root is None and (train_dir is None or val_dir is None):
            raise DatasetError("ViaDataModule needs root, or both train_dir and val_dir")
        self.via_dirs = {
            "train": Path(train_dir or Path(str(root)) / "train").expanduser(),
            "val": Path(val_dir or Path(str(root)) / "val").expanduser(),
        }
        self.annotation = annotation
        self.category = category
        self.category_attribute = category_attribute
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir() / "via"
        self._converted = False

    def prepare_data(self) -> None:
        """Convert the VIA files to COCO unless the cache already holds them (and write the fold files)."""
        self.resolve()

    def _converted_path(self, via_json: Path) -> Path:
        """Return the cache file for ``via_json``: keyed by its path, size, mtime and the options."""
        stat = via_json.stat()
        options = f"{self.category}|{self.category_attribute}|{CONVERTER_VERSION}"
        key = f"{via_json.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{options}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:12]
        return self.cache_dir / f"{via_json.parent.name}_{digest}.json"

    def resolve_paths(self) -> None:
        """Point the train/val paths at the converted COCO files (converting them if needed)."""
        if self._converted:
            return
        for split, folder in self.via_dirs.items():
            via_json = folder / self.annotation
            if not via_json.is_file():
                raise DatasetError(f"VIA annotation file not found: {via_json} (data.{split}_dir={folder})")
            coco_json = self._converted_path(via_json)
            if not coco_json.is_file():
                coco = via_to_coco(via_json, folder, self.category, self.category_attribute)
                write_json_atomic(coco, coco_json)
            setattr(self, f"{split}_images", str(folder))
            setattr(self, f"{split}_ann", str(coco_json))
        self._converted = True
