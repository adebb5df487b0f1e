"""ViaDataModule (data=balloon): VIA folders converted once into the cache, then loaded as COCO."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.loaders import LOADER

from msr.data.datamodules import ViaDataModule
from msr.errors import DatasetError


def test_balloon_converts_once_and_loads(balloon_dir: Path, tmp_path: Path) -> None:
    module = ViaDataModule(root=str(balloon_dir), category="balloon", cache_dir=str(tmp_path), **LOADER)
    assert module.num_classes == 2 and module.class_names == ["__background__", "balloon"]
    module.prepare_data()
    module.setup("fit")
    assert len(module.train_dataset) == 61 and len(module.val_dataset) == 13
    converted = sorted(tmp_path.glob("*.json"))
    assert [p.name.split("_")[0] for p in converted] == ["train", "val"]
    stamps = [p.stat().st_mtime_ns for p in converted]
    again = ViaDataModule(root=str(balloon_dir), category="balloon", cache_dir=str(tmp_path), **LOADER)
    again.setup("fit")
    assert sorted(tmp_path.glob("*.json")) == converted  # reused, not rewritten
    assert [p.stat().st_mtime_ns for p in converted] == stamps
    images, targets = next(iter(module.train_dataloader()))
    assert len(images) == 2 and all(t["labels"].eq(1).all() for t in targets)


def test_missing_via_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    module = ViaDataModule(
        root=str(tmp_path), category="balloon", cache_dir=str(tmp_path / "cache"), **LOADER
    )
    with pytest.raises(DatasetError, match=r"VIA annotation file not found: .*train/via_region_data.json"):
        module.setup("fit")


def test_needs_root_or_both_folders() -> None:
    with pytest.raises(DatasetError, match="needs root, or both train_dir and val_dir"):
        ViaDataModule(train_dir="somewhere", category="balloon", **LOADER)
