"""K-fold cross-validation over a data set's pooled train and val pictures (data.folds, data.fold)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.loaders import LOADER

from msr.data.datamodules import CocoDataModule, ViaDataModule
from msr.data.folds import pooled_pictures, split_fold, write_fold_files
from msr.errors import DatasetError

CATEGORIES = [{"id": 1, "name": "balloon"}]


def split(num_images: int, prefix: str) -> dict:
    """Return a COCO dict of `num_images` pictures with ids from 1 (as both splits of a converted VIA set
    have) and two annotations each."""
    ids = range(1, num_images + 1)
    images = [{"id": i, "file_name": f"{prefix}{i}.jpg", "height": 10, "width": 10} for i in ids]
    anns = [
        {
            "id": 2 * i + k,
            "image_id": i,
            "category_id": 1,
            "bbox": [0, 0, 2, 2],
            "area": 4,
            "iscrowd": 0,
            "segmentation": [[0, 0, 2, 0, 2, 2]],
        }
        for i in range(1, num_images + 1)
        for k in range(2)
    ]
    return {"images": images, "annotations": anns, "categories": CATEGORIES}


def test_every_picture_is_in_exactly_one_val_fold_with_its_annotations(tmp_path: Path) -> None:
    splits = [(split(61, "t"), str(tmp_path / "train")), (split(13, "v"), str(tmp_path / "val"))]
    pooled = pooled_pictures(splits)
    assert len(pooled["images"]) == 74 and len({im["id"] for im in pooled["images"]}) == 74
    assert len({a["id"] for a in pooled["annotations"]}) == 148
    assert all(Path(im["file_name"]).is_absolute() for im in pooled["images"])
    assert pooled["images"][61]["file_name"] == str((tmp_path / "val" / "v1.jpg").resolve())
    seen: list[int] = []
    for fold in range(5):
        train, val = split_fold(pooled, 5, fold, seed=0)
        val_ids, train_ids = {im["id"] for im in val["images"]}, {im["id"] for im in train["images"]}
        assert not val_ids & train_ids and len(val_ids | train_ids) == 74
        assert len(val_ids) in (14, 15)
        assert {a["image_id"] for a in val["annotations"]} == val_ids
        assert len(val["annotations"]) == 2 * len(val_ids)
        seen += sorted(val_ids)
    assert sorted(seen) == list(range(1, 75))
    reshuffled, first = split_fold(pooled, 5, 0, seed=1)[1], split_fold(pooled, 5, 0, seed=0)[1]
    assert {im["id"] for im in reshuffled["images"]} != {im["id"] for im in first["images"]}


def test_bad_folds_and_mismatched_categories_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="data.folds=1: k-fold cross-validation needs at least 2 folds"):
        CocoDataModule(folds=1, **LOADER)
    with pytest.raises(DatasetError, match=r"data.fold=5: must be between 0 and data.folds - 1 = 4"):
        CocoDataModule(folds=5, fold=5, **LOADER)
    other = {**split(3, "v"), "categories": [{"id": 1, "name": "kite"}]}
    with pytest.raises(DatasetError, match="different categories"):
        pooled_pictures([(split(3, "t"), "train"), (other, "val")])


def test_fold_files_are_written_once_and_reused(tmp_path: Path) -> None:
    files = []
    for name, count in (("train", 8), ("val", 4)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(split(count, name)))
        files.append((str(path), str(tmp_path / name)))
    train, val = write_fold_files(files, 3, 1, 0, tmp_path / "folds")
    assert len(json.loads(val.read_text())["images"]) == 4
    assert len(json.loads(train.read_text())["images"]) == 8
    stamp = val.stat().st_mtime_ns
    assert write_fold_files(files, 3, 1, 0, tmp_path / "folds") == (train, val)
    assert val.stat().st_mtime_ns == stamp
    assert write_fold_files(files, 3, 2, 0, tmp_path / "folds")[1] != val


def test_balloon_folds_cover_all_74_pictures(balloon_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MSR_CACHE_DIR", str(tmp_path))
    sizes, val_files = [], set()
    for fold in range(5):
        module = ViaDataModule(
            root=str(balloon_dir), category="balloon", **{**LOADER, "batch_size": 1}, folds=5, fold=fold
        )
        module.prepare_data()
        module.setup("fit")
        sizes.append((len(module.train_dataset), len(module.val_dataset)))
        val_files |= {im["file_name"] for im in json.loads(Path(module.val_ann).read_text())["images"]}
    assert [t + v for t, v in sizes] == [74] * 5 and sum(v for _, v in sizes) == 74
    assert len(val_files) == 74
    image, target = module.val_dataset[0]  # a picture is read from its own folder
    assert image.shape[0] == 3 and target["masks"].shape[0] >= 1
