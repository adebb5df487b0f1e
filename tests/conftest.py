"""Fixtures every test folder shares: the subprocess environment and the real data of ../shared.

Shared helpers live in tests/support/ (imported as `support.*`); each folder's conftest.py holds only what
that folder needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from support.env import subprocess_env
from support.paths import BALLOON_DIR, COCO_FIXTURE, FIXTURE_DIR, require


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory) -> dict[str, str]:
    """Return the environment of the programs run as subprocesses (see support.env.subprocess_env)."""
    return subprocess_env(tmp_path_factory.mktemp("msr_cache"))


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """Return ../shared/data/coco_eval_fixture (the test is skipped when ../shared is absent)."""
    return require(FIXTURE_DIR)


@pytest.fixture(scope="session")
def coco_fixture_json() -> Path:
    """Return the real COCO val2014 annotations of 100 pictures (polygons, RLE, crowd); skip if absent."""
    return require(COCO_FIXTURE)


@pytest.fixture(scope="session")
def balloon_dir() -> Path:
    """Return the balloon set (VIA polygons); skip if ../shared is absent."""
    return require(BALLOON_DIR)


@pytest.fixture(scope="session")
def coco_fixture_images(coco_fixture_json: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder of blank JPEG pictures with the names and sizes the COCO fixture lists."""
    folder = tmp_path_factory.mktemp("coco_fixture_images")
    for image in json.loads(coco_fixture_json.read_text())["images"]:
        Image.new("RGB", (image["width"], image["height"])).save(folder / image["file_name"], format="JPEG")
    return folder
