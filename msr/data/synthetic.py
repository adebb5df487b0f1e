"""Embedded synthetic instance-segmentation data set written as real COCO files (no download).

Pictures of textured backgrounds with overlapping shapes of six classes (drawn by
``msr.data.synthetic_shapes``); this module holds the parameters, the cache and the COCO files.

Everything is a pure function of the parameters and the seed: each picture has its own random
stream seeded by ``(seed, split, index)``, so the same parameters give byte-identical files.
``generate_synthetic_coco`` caches the result under ``$MSR_CACHE_DIR`` (or ``~/.cache/msr``) in
a folder keyed by a hash of the parameters and ``GENERATOR_VERSION``, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from msr.data.segmentation import mask_to_rle, rle_bbox_xywh
from msr.data.synthetic_shapes import CATEGORY_NAMES, render_picture
from msr.files import build_folder_once

#: Bump whenever the pictures or annotations produced for given parameters change.
GENERATOR_VERSION = 1

_SPLIT_CODES = {"train": 0, "val": 1}


@dataclass(frozen=True)
class SyntheticCoco:
    """Paths of a generated synthetic COCO data set."""

    root: Path
    train_images: Path
    train_ann: Path
    val_images: Path
    val_ann: Path

    @classmethod
    def at(cls, root: str | Path) -> SyntheticCoco:
        """Return the paths of the data set laid out under ``root``."""
        root = Path(root)
        return cls(
            root=root,
            train_images=root / "train",
            train_ann=root / "annotations" / "instances_train.json",
            val_images=root / "val",
            val_ann=root / "annotations" / "instances_val.json",
        )

    def exists(self) -> bool:
        """Return True when both annotation files and image folders are present."""
        return all(p.exists() for p in (self.train_images, self.train_ann, self.val_images, self.val_ann))


def synthetic_params(
    num_train: int = 2000,
    num_val: int = 200,
    image_size: int | tuple[int, int] | list[int] = 128,
    min_objects: int = 1,
    max_objects: int = 4,
    min_object_size: float = 0.25,
    max_object_size: float = 0.6,
    min_visible_fraction: float = 0.25,
    min_visible_area: int = 16,
    seed: int = 0,
) -> dict[str, Any]:
    """Return the generator parameters, validated and normalised (``image_size`` -> [H, W]).

    The defaults here are the synthetic set's only Python defaults (``SyntheticDataModule`` takes them);
    msr/conf/data/synthetic.yaml gives the same values (tests/config/test_defaults.py).

    Args:
        num_train, num_val: number of pictures per split.
        image_size: side of square pictures, or ``(height, width)``.
        min_objects, max_objects: objects placed per picture (before occlusion drops some).
        min_object_size, max_object_size: object diameter as a fraction of the shorter image
            side (drawn log-uniformly).
        min_visible_fraction, min_visible_area: an instance is kept only if its visible pixels
            are at least this fraction of its in-picture pixels and at least this many pixels.
        seed: seed of the whole data set.
    """
    if isinstance(image_size, (int, float)):
        height = width = int(image_size)
    else:
        height, width = (int(s) for s in image_size)
    params = {
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": [height, width],
        "min_objects": int(min_objects),
        "max_objects": int(max_objects),
        "min_object_size": float(min_object_size),
        "max_object_size": float(max_object_size),
        "min_visible_fraction": float(min_visible_fraction),
        "min_visible_area": int(min_visible_area),
        "seed": int(seed),
    }
    if min(height, width) < 16:
        raise ValueError(f"image_size must be at least 16 px, got {image_size!r}")
    if params["num_train"] < 0 or params["num_val"] < 0:
        raise ValueError("num_train and num_val must be >= 0")
    if not 0 <= params["min_objects"] <= params["max_objects"]:
        raise ValueError("need 0 <= min_objects <= max_objects")
    if not 0 < params["min_object_size"] <= params["max_object_size"]:
        raise ValueError("need 0 < min_object_size <= max_object_size")
    return params


def synthetic_cache_key(params: dict[str, Any]) -> str:
    """Return the cache folder name for normalised ``params``: version plus a parameter hash."""
    blob = json.dumps({"generator_version": GENERATOR_VERSION, **params}, sort_keys=True)
    return f"synthetic-v{GENERATOR_VERSION}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def default_cache_dir() -> Path:
    """Return the cache root: ``$MSR_CACHE_DIR`` if set, else ``~/.cache/msr``."""
    env = os.environ.get("MSR_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "msr"


def _write_split(out: Path, split: str, count: int, params: dict[str, Any]) -> dict[str, Any]:
    """Write ``count`` pictures of ``split`` into ``out/split`` and return its COCO dict."""
    image_dir = out / split
    image_dir.mkdir(parents=True)
    height, width = params["image_size"]
    images, annotations = [], []
    for index in range(count):
        rng = np.random.default_rng([params["seed"], _SPLIT_CODES[split], index])
        picture, instances = render_picture(rng, params)
        image_id = index + 1
        file_name = f"{image_id:06d}.png"
        Image.fromarray(picture).save(image_dir / file_name, format="PNG", compress_level=1)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for category_id, mask in instances:
            rle = mask_to_rle(mask)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id,
                    "segmentation": rle,
                    "area": int(mask.sum()),
                    "bbox": rle_bbox_xywh(rle),
                    "iscrowd": 0,
                }
            )
    return {
        "info": {
            "description": f"msr synthetic shapes ({split})",
            "version": str(GENERATOR_VERSION),
            "params": params,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CATEGORY_NAMES)
        ],
    }


def write_synthetic_coco(out_dir: str | Path, **params: Any) -> SyntheticCoco:
    """Write the data set for ``params`` (see ``synthetic_params``) into ``out_dir``; return its paths.

    ``out_dir`` must not exist or be empty. Layout: ``train/``, ``val/`` (PNG pictures),
    ``annotations/instances_{train,val}.json`` (compressed-RLE masks) and ``params.json``.
    """
    params = synthetic_params(**params)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"refusing to write the synthetic data set into non-empty {out}")
    paths = SyntheticCoco.at(out)
    paths.train_ann.parent.mkdir(parents=True, exist_ok=True)
    for split, count, ann_file in (
        ("train", params["num_train"], paths.train_ann),
        ("val", params["num_val"], paths.val_ann),
    ):
        coco = _write_split(out, split, count, params)
        ann_file.write_text(json.dumps(coco, separators=(",", ":")))
    meta = {"generator_version": GENERATOR_VERSION, **params}
    (out / "params.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return paths


def generate_synthetic_coco(cache_dir: str | Path | None = None, **params: Any) -> SyntheticCoco:
    """Return the paths of the synthetic data set for ``params``, generating it if not cached.

    The set lives in ``<cache_dir>/synthetic/<synthetic_cache_key(params)>`` (``cache_dir``
    defaults to ``default_cache_dir()``). It is written into a temporary sibling folder and
    renamed into place, so an interrupted run never leaves a half-written set and concurrent
    processes (DDP ranks) end up sharing one complete copy.
    """
    params = synthetic_params(**params)
    parent = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    parent = parent / "synthetic"
    paths = SyntheticCoco.at(parent / synthetic_cache_key(params))
    build_folder_once(
        paths.root,
        is_complete=lambda root: SyntheticCoco.at(root).exists(),
        write=lambda folder: write_synthetic_coco(folder, **params),
    )
    return paths
