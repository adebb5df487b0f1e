"""Fixtures of the evaluation tests: the shared COCO API fixture and tiny hand-made COCO sets."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent


def _load_synthetic() -> ModuleType:
    """Import tests/evaluation/synthetic_coco.py by path (works whatever pytest's import mode)."""
    if "synthetic_coco" in sys.modules:
        return sys.modules["synthetic_coco"]
    spec = importlib.util.spec_from_file_location("synthetic_coco", HERE / "synthetic_coco.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["synthetic_coco"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def synth() -> ModuleType:
    """The synthetic_coco helper module (tiny rectangle datasets and fake model outputs)."""
    return _load_synthetic()


@pytest.fixture
def tiny_gt(tmp_path: Path, synth: ModuleType) -> tuple[Path, dict]:
    """(path, dataset) of a 5-image COCO annotation file with non-contiguous image and category ids."""
    dataset = synth.make_dataset(num_images=5)
    path = tmp_path / "instances_tiny.json"
    path.write_text(json.dumps(dataset))
    return path, dataset
