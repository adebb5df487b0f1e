"""Paths the tests read: the checkout, its experiments, and the real data in ../shared beside it."""

from __future__ import annotations

import os
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


def in_ci() -> bool:
    """Return True where CI runs the tests (the environment variable CI is set to true, as CI services do)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(path: Path) -> Path:
    """Return `path`; when it is absent (../shared is not beside the checkout) skip the test, or, where CI
    runs the tests (`in_ci`), fail it: CI must never pass without the checks on real data."""
    if not path.exists():
        message = f"{path} not found (../shared absent)"
        if in_ci():
            pytest.fail(f"{message}; CI needs ../shared beside the checkout", pytrace=False)
        pytest.skip(message)
    return path


def require_fixture() -> Path:
    """Return the COCO eval fixture folder (see `require` when ../shared is absent)."""
    return require(FIXTURE_DIR)


def require_balloon() -> Path:
    """Return the balloon set folder (see `require` when ../shared is absent)."""
    return require(BALLOON_DIR)
