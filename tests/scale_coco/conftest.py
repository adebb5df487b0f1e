"""Fixtures of the COCO-scale tests: the shared COCO fixture with blank pictures, a tiny synthetic set,
a miniature COCO-like 2017 layout, and the benchmark scripts' folder on the import path."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from msr.data.coco_like_files import write_coco_like_layout
from msr.data.synthetic import SyntheticCoco, write_synthetic_coco

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "experiments" / "benchmarks"
COCO_FIXTURE = REPO.parent / "shared" / "data" / "coco_eval_fixture" / "instances_val2014_100.json"

sys.path.insert(0, str(BENCHMARKS))  # _old_coco, gpu, coco_scale_data, ... (scripts, not a package)


@pytest.fixture(scope="session")
def coco_fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(picture folder, annotation file) of the real COCO val2014 annotations of 100 pictures (polygons,
    RLE, crowd) with blank JPEGs of the listed sizes; skip when ../shared is absent."""
    if not COCO_FIXTURE.is_file():
        pytest.skip(f"shared COCO fixture not found at {COCO_FIXTURE}")
    folder = tmp_path_factory.mktemp("coco_fixture_pictures")
    for image in json.loads(COCO_FIXTURE.read_text())["images"]:
        Image.new("RGB", (image["width"], image["height"])).save(folder / image["file_name"], format="JPEG")
    return folder, COCO_FIXTURE


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCoco:
    """A tiny synthetic set (compressed-RLE masks): 8 train and 4 val pictures of 64 px."""
    # the crowded set these tests were written against (synthetic_params' defaults make 1-4 larger objects)
    root = tmp_path_factory.mktemp("synthetic") / "set"
    return write_synthetic_coco(root, num_train=8, num_val=4, seed=5, max_objects=6, min_object_size=0.15)


@pytest.fixture(scope="session")
def coco_like_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A miniature COCO 2017 layout: 12 train and 4 val JPEGs of at most 96 px, polygons and crowd RLE."""
    root = tmp_path_factory.mktemp("coco_like") / "coco"
    write_coco_like_layout(
        root, num_train=12, num_val=4, seed=3, max_side=96, pictures="jpeg", crowd_fraction=0.1
    )
    return root
