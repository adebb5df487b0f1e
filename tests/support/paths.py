"""Paths the tests read: the checkout, its experiments, and the real data in ../shared beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
EXPERIMENTS = ROOT / "experiments"
BENCHMARKS = EXPERIMENTS / "benchmarks"
#: ../shared/data beside the checkout: real data for tests (balloon, the COCO eval fixture).
SHARED_DATA = ROOT.parent / "shared" / "data"
FIXTURE_DIR = SHARED_DATA / "coco_eval_fixture"
COCO_FIXTURE = FIXTURE_DIR / "instances_val2014_100.json"
BALLOON_DIR = SHARED_DATA / "balloon"


def require(path: Path) -> Path:
    """Return `path`, or skip the test when it is absent (../shared is not beside the checkout)."""
    if not path.exists():
        pytest.skip(f"{path} not found (../shared absent)")
    return path


def require_fixture() -> Path:
    """Return the COCO eval fixture folder, or skip when ../shared is absent."""
    return require(FIXTURE_DIR)


def require_balloon() -> Path:
    """Return the balloon set folder, or skip when ../shared is absent."""
    return require(BALLOON_DIR)
