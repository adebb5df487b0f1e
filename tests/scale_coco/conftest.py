"""Fixtures of the COCO-scale tests: the shared COCO fixture with blank pictures, a tiny synthetic set and
a miniature COCO-like 2017 layout (the benchmark scripts of experiments/benchmarks are importable: see
pythonpath in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

import pytest
from coco_like_files import write_coco_like_layout

from msr.data.synthetic import SyntheticCoco, write_synthetic_coco


@pytest.fixture(scope="session")
def coco_fixture(coco_fixture_images: Path, coco_fixture_json: Path) -> tuple[Path, Path]:
    """(picture folder, annotation file) of the real COCO val2014 annotations of 100 pictures (polygons,
    RLE, crowd) with blank JPEGs of the listed sizes; skip when ../shared is absent."""
    return coco_fixture_images, coco_fixture_json


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
