"""Shared fixtures of the msr.data tests: tiny real files in temporary folders."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from msr.data.synthetic import SyntheticCoco, write_synthetic_coco


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCoco:
    """A tiny synthetic COCO set: 8 train and 4 val pictures of 64 px."""
    root = tmp_path_factory.mktemp("synthetic") / "set"
    # the crowded set these tests were written against (synthetic_params' defaults make 1-4 larger objects)
    return write_synthetic_coco(
        root, num_train=8, num_val=4, image_size=64, seed=3, max_objects=6, min_object_size=0.15
    )


def write_image(path: Path, height: int, width: int, value: int = 128) -> Path:
    """Write a flat RGB PNG of the given size and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(path)
    return path


def write_coco_json(path: Path, images: list[dict], annotations: list[dict], categories: list[dict]) -> Path:
    """Write a COCO instances JSON and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def square_polygon(x: float, y: float, size: float) -> list[list[float]]:
    """Return a COCO polygon segmentation of an axis-aligned square."""
    return [[x, y, x + size, y, x + size, y + size, x, y + size]]


@pytest.fixture
def files() -> SimpleNamespace:
    """Helpers that write small real files: ``image``, ``coco_json``, ``square``."""
    return SimpleNamespace(image=write_image, coco_json=write_coco_json, square=square_polygon)
