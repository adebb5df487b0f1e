"""Helpers of the entry-point tests: run the real console programs as subprocesses through Hydra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
FIXTURE_DIR = SHARED / "coco_eval_fixture"
BALLOON_DIR = SHARED / "balloon"

#: 8 train and 5 (odd) val pictures of 128 px: the data of every entry-point test.
TINY_DATA = [
    "data.num_train=8",
    "data.num_val=5",
    "data.num_workers=0",
    "data.batch_size=2",
    "data.eval_batch_size=2",
]
#: msr-train overrides: the quickstart recipe with fewer RoIs, on TINY_DATA, logging every step.
TINY = [
    "experiment=quickstart",
    *TINY_DATA,
    "model.rpn_post_nms_top_n_test=50",
    "model.box_batch_size_per_image=32",
    "model.box_detections_per_img=10",
    "logger=csv",
    "trainer.log_every_n_steps=1",
]


def run_cli(program: str, *overrides: str, env: dict[str, str], cwd: Path, check: bool = True):
    """Run `python -m msr.cli.<program> overrides...`; return the CompletedProcess (text output)."""
    proc = subprocess.run(
        [sys.executable, "-m", f"msr.cli.{program}", *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"msr.cli.{program} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def require_fixture() -> Path:
    """Return the COCO eval fixture folder, or skip when ../shared is absent."""
    if not FIXTURE_DIR.is_dir():
        pytest.skip(f"{FIXTURE_DIR} not found (../shared absent)")
    return FIXTURE_DIR


def require_balloon() -> Path:
    """Return the balloon set folder, or skip when ../shared is absent."""
    if not BALLOON_DIR.is_dir():
        pytest.skip(f"{BALLOON_DIR} not found (../shared absent)")
    return BALLOON_DIR
