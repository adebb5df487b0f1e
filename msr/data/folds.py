"""K-fold cross-validation over a COCO-format data set given as a train and a val split.

The pictures of both splits are pooled, shuffled by a seed and dealt round-robin into `folds` folds;
fold `fold` becomes the val split and the others the train split, so that over the k folds every picture
is scored once by a model that did not train on it. Picture and annotation ids are renumbered (the two
splits of a converted VIA set both count from 1) and every `file_name` is made absolute (the pictures
stay in their two folders).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from msr.errors import DatasetError
from msr.files import write_json_atomic

#: Part of the cache key of fold files: bumped when the same inputs would give other files.
FOLDS_VERSION = 1


def check_fold(folds: int | None, fold: int) -> None:
    """Raise DatasetError naming `data.folds`/`data.fold` unless 2 <= folds and 0 <= fold < folds."""
    if folds is None:
        return
    if int(folds) < 2:
        raise DatasetError(f"data.folds={folds}: k-fold cross-validation needs at least 2 folds")
    if not 0 <= int(fold) < int(folds):
        raise DatasetError(f"data.fold={fold}: must be between 0 and data.folds - 1 = {int(folds) - 1}")


def pooled_pictures(splits: list[tuple[Mapping[str, Any], str]]) -> dict[str, Any]:
    """Return one COCO dict of the pictures and annotations of `splits` ((dataset, images folder) each),
    ids renumbered from 1 in split order and file names made absolute; the categories must agree."""
    categories = splits[0][0]["categories"]
    names = sorted((c["id"], c["name"]) for c in categories)
    images, anns = [], []
    for dataset, folder in splits:
        if sorted((c["id"], c["name"]) for c in dataset["categories"]) != names:
            raise DatasetError(f"the splits to pool into folds have different categories ({folder})")
        new_ids = {}
        for image in sorted(dataset["images"], key=lambda im: im["id"]):
            new_ids[image["id"]] = len(images) + 1
            path = str((Path(folder) / image["file_name"]).resolve())
            images.append({**image, "id": new_ids[image["id"]], "file_name": path})
        for ann in dataset["annotations"]:
            anns.append({**ann, "id": len(anns) + 1, "image_id": new_ids[ann["image_id"]]})
    return {"images": images, "annotations": anns, "categories": list(categories)}


def fold_of_pictures(num_images: int, folds: int, seed: int) -> np.ndarray:
    """Return [num_images] the fold of each picture: a seeded shuffle dealt round-robin (sizes differ by
    at most one)."""
    order = np.random.default_rng(seed).permutation(num_images)
    fold = np.empty(num_images, dtype=np.int64)
    fold[order] = np.arange(num_images) % folds
    return fold


def split_fold(pooled: Mapping[str, Any], folds: int, fold: int, seed: int) -> tuple[dict, dict]:
    """Return (train, val) COCO dicts of `pooled`: val holds the pictures of fold `fold`, train the rest."""
    check_fold(folds, fold)
    assigned = fold_of_pictures(len(pooled["images"]), folds, seed)
    val_ids = {im["id"] for im, k in zip(pooled["images"], assigned) if k == fold}

    def part(in_val: bool) -> dict:
        images = [im for im in pooled["images"] if (im["id"] in val_ids) == in_val]
        anns = [a for a in pooled["annotations"] if (a["image_id"] in val_ids) == in_val]
        return {**pooled, "images": images, "annotations": anns}

    return part(False), part(True)


def write_fold_files(
    splits: list[tuple[str, str]], folds: int, fold: int, seed: int, cache_dir: Path
) -> tuple[Path, Path]:
    """Return (train, val) annotation files of fold `fold` of the pooled `splits` ((annotation file,
    images folder) each), written once into `cache_dir` under a name keyed by the inputs' contents."""
    check_fold(folds, fold)
    loaded = []
    digest = hashlib.sha1(f"{folds}|{fold}|{seed}|{FOLDS_VERSION}".encode())
    for ann_file, folder in splits:
        text = Path(ann_file).read_bytes()
        digest.update(text + str(Path(folder).resolve()).encode())
        try:
            loaded.append((json.loads(text), folder))
        except ValueError as err:
            raise DatasetError(f"{ann_file}: not a JSON file ({err})") from err
    stem = cache_dir / f"fold{fold}of{folds}_seed{seed}_{digest.hexdigest()[:12]}"
    train_file, val_file = stem.with_name(stem.name + "_train.json"), stem.with_name(stem.name + "_val.json")
    if not (train_file.is_file() and val_file.is_file()):
        train, val = split_fold(pooled_pictures(loaded), folds, fold, seed)
        write_json_atomic(train, train_file)
        write_json_atomic(val, val_file)
    return train_file, val_file
