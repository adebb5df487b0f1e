"""Helpers of the robustness tests: tiny COCO sets on disk and the entry tests' overrides and runners
(support.cli: run_cli, and run_batch, which calls several console entry points in one Python process)."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from support.cli import TINY, TINY_DATA, run_batch, run_cli

#: The quickstart model with fewer RoIs (TINY without its synthetic data keys), no figures.
MODEL = [o for o in TINY if o not in TINY_DATA] + ["callbacks.figures=null"]
Editor = Callable[[dict, dict], None]  # changes the train and val dicts of a tiny COCO set
#: The run of the fault-injection test (issue 15's case: `schedule.max_steps` set, `max_epochs` ends
#: training): 2 epochs of 2 steps on 4 synthetic pictures, resumed with ckpt_path=auto.
EPOCHS_RUN = [o for o in TINY if not o.startswith("data.num_train")] + [
    "data.num_train=4",
    "schedule=cpu_tiny",
    "schedule.max_steps=300",
    "schedule.max_epochs=2",
    "+logger.flush_logs_every_n_steps=1",
    "callbacks.figures=null",
    "ckpt_path=auto",
]
SIZE = 64  # pictures of the tiny COCO sets are SIZE x SIZE


def square(x: float, y: float, side: float) -> list[list[float]]:
    """Return the COCO polygon of an axis-aligned square."""
    return [[x, y, x + side, y, x + side, y + side, x, y + side]]


def coco_split(first_id: int, count: int) -> dict:
    """Return a COCO dict of `count` SIZE x SIZE pictures `<id>.png`, one square instance each."""
    images = [
        {"id": i, "file_name": f"{i}.png", "height": SIZE, "width": SIZE}
        for i in range(first_id, first_id + count)
    ]
    annotations = [
        {
            "id": 100 + img["id"],
            "image_id": img["id"],
            "category_id": 1,
            "bbox": [8.0, 8.0, 32.0, 32.0],
            "area": 1024.0,
            "segmentation": square(8, 8, 32),
            "iscrowd": 0,
        }
        for img in images
    ]
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}


def tiny_coco(
    root: Path, edit: Callable[[dict, dict], None] | None = None, train: int = 4, val: int = 2
) -> dict:
    """Write a tiny COCO set under `root` (pictures in images/, train.json, val.json), after `edit(train,
    val)` changed the dicts; return its paths (`images`, `train`, `val`)."""
    splits = {"train": coco_split(1, train), "val": coco_split(1 + train, val)}
    originals = copy.deepcopy(splits)
    if edit is not None:
        edit(splits["train"], splits["val"])
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split in originals.values():
        for img in split["images"]:
            pixels = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
            pixels[8:40, 8:40] = 255  # the instance: a white square
            Image.fromarray(pixels).save(images / img["file_name"])
    paths = {"images": images}
    for name, split in splits.items():
        paths[name] = root / f"{name}.json"
        paths[name].write_text(json.dumps(split))
    return paths


def custom_data(paths: dict) -> list[str]:
    """Return the msr-train overrides of `data=custom` over a `tiny_coco` set (no workers, batch 2)."""
    return [
        "data=custom",
        f"data.train_images={paths['images']}",
        f"data.train_ann={paths['train']}",
        f"data.val_images={paths['images']}",
        f"data.val_ann={paths['val']}",
        "data.num_workers=0",
        "data.batch_size=2",
        "data.eval_batch_size=2",
    ]


def truncate(picture: Path) -> None:
    """Cut a PNG file in half: its header still reads, its pixels do not."""
    data = picture.read_bytes()
    picture.write_bytes(data[: len(data) // 2])


def unwritable_folder(path: Path) -> Path:
    """Return an existing run folder whose log file cannot be written: read-only where permissions apply,
    else (root ignores them) one where the log file's name is taken by a folder."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
    else:
        (path / "train.log").mkdir()
    return path


__all__ = [
    "MODEL",
    "TINY",
    "custom_data",
    "run_batch",
    "run_cli",
    "tiny_coco",
    "truncate",
    "unwritable_folder",
]
