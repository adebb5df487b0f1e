"""Files of the COCO-like data set of `msr.data.coco_like`: an instances JSON written chunk by chunk,
its pictures (zero-byte files or JPEGs with the instances painted in), a miniature COCO 2017 layout,
and that layout built once and cached. Every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from coco_like import (
    CHUNK,
    COCO_CATEGORY_IDS,
    COCO_TRAIN_IMAGES,
    COCO_VAL_IMAGES,
    GENERATOR_VERSION,
    PICTURES,
    coco_like_annotations,
    coco_like_images,
)

from msr.files import atomic_path, build_folder_once


def write_coco_like_json(
    path: str | Path,
    num_images: int,
    seed: int = 0,
    split: str = "train",
    max_side: int = 640,
    *,
    pictures: str = "none",
    picture_dir: str | Path | None = None,
    crowd_fraction: float = 0.01,
) -> dict[str, int]:
    """Write a COCO-like instances file of `num_images` pictures to `path` (atomically) and, unless
    `pictures="none"`, its pictures into `picture_dir`: `"empty"` (zero-byte files) or `"jpeg"`.
    `crowd_fraction`: the share of instances that are crowd regions.

    Returns its counts: `images`, `annotations`, `crowd`, `polygons`, `vertices` (of all polygons).
    """
    if pictures not in PICTURES:
        raise ValueError(f"pictures must be one of {PICTURES}, got {pictures!r}")
    images = coco_like_images(num_images, seed, split, max_side)
    categories = [{"id": c, "name": f"class{c:02d}", "supercategory": "thing"} for c in COCO_CATEGORY_IDS]
    stats = {"images": len(images), "annotations": 0, "crowd": 0, "polygons": 0, "vertices": 0}
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        info = {"description": f"msr COCO-like {split} (seed {seed})", "version": "1"}
        f.write(f'{{"info":{json.dumps(info)},"licenses":[],"images":')
        f.write(json.dumps(images, separators=(",", ":")))
        f.write(',"annotations":[')
        for start, anns in zip(
            range(0, len(images), CHUNK), coco_like_annotations(images, seed, split, crowd_fraction)
        ):
            if pictures != "none":
                _write_pictures(Path(picture_dir), images[start : start + CHUNK], anns, pictures)
            if not anns:
                continue
            f.write(("," if stats["annotations"] else "") + json.dumps(anns, separators=(",", ":"))[1:-1])
            stats["annotations"] += len(anns)
            for ann in anns:
                if ann["iscrowd"]:
                    stats["crowd"] += 1
                else:
                    stats["polygons"] += len(ann["segmentation"])
                    stats["vertices"] += sum(len(p) // 2 for p in ann["segmentation"])
        f.write(f'],"categories":{json.dumps(categories, separators=(",", ":"))}}}')
    return stats


def _write_pictures(folder: Path, images: list[dict], anns: list[dict], pictures: str) -> None:
    """Write `images` into `folder`: zero-byte files, or JPEGs with their instances' polygons painted."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    by_image: dict[int, list[dict]] = {}
    for ann in anns:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for image in images:
        target = folder / image["file_name"]
        if pictures == "empty":
            target.touch()
            continue
        picture = Image.new("RGB", (image["width"], image["height"]), (90, 110, 120))
        draw = ImageDraw.Draw(picture)
        for ann in by_image.get(image["id"], []):
            colour = tuple(int(c) for c in (np.array([37, 91, 173]) * ann["category_id"]) % 256)
            for polygon in [] if ann["iscrowd"] else ann["segmentation"]:
                draw.polygon(polygon, fill=colour)
        picture.save(target, format="JPEG", quality=90)


def write_coco_like_layout(
    root: str | Path,
    num_train: int = COCO_TRAIN_IMAGES,
    num_val: int = COCO_VAL_IMAGES,
    *,
    seed: int = 0,
    max_side: int = 640,
    pictures: str = "none",
    crowd_fraction: float = 0.01,
) -> dict[str, dict[str, int]]:
    """Write a COCO 2017 layout under `root`: `annotations/instances_{train,val}2017.json` and, unless
    `pictures="none"`, `train2017/` and `val2017/` with `"empty"` (zero-byte) or `"jpeg"` pictures.

    Returns `{"train": counts, "val": counts}` (see `write_coco_like_json`).
    """
    root = Path(root)
    return {
        split: write_coco_like_json(
            root / "annotations" / f"instances_{split}2017.json",
            count,
            seed,
            split,
            max_side,
            pictures=pictures,
            picture_dir=root / f"{split}2017",
            crowd_fraction=crowd_fraction,
        )
        for split, count in (("train", num_train), ("val", num_val))
    }


def cached_coco_like_layout(
    cache_dir: str | Path | None = None,
    *,
    num_train: int = COCO_TRAIN_IMAGES,
    num_val: int = COCO_VAL_IMAGES,
    seed: int = 0,
    max_side: int = 640,
    pictures: str = "none",
) -> Path:
    """Return the root of the COCO 2017 layout `write_coco_like_layout` writes for these arguments, cached.

    It lives in `<cache_dir>/coco_like/<arguments>` (`cache_dir` defaults to `$MSR_CACHE_DIR` or
    `~/.cache/msr`), written into a temporary sibling folder first and renamed into place when
    complete; `stats.json` beside the annotations holds the counts.
    """
    from msr.data.synthetic import default_cache_dir

    parent = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "coco_like"
    params = {"num_train": num_train, "num_val": num_val, "seed": seed, "max_side": max_side}
    key = "-".join(f"{k}{v}" for k, v in params.items())
    root = parent / f"v{GENERATOR_VERSION}-{key}-{pictures}"

    def write(folder: Path) -> None:
        stats = write_coco_like_layout(folder, **params, pictures=pictures)
        (folder / "stats.json").write_text(json.dumps(stats, indent=2))

    return build_folder_once(root, is_complete=lambda r: (r / "stats.json").is_file(), write=write)
