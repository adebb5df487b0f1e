"""Fixtures of the entry-point tests: one tiny training run (synthetic data, 4 steps, narrow heads)
shared by every test of this folder."""

from __future__ import annotations

import json

import pytest
from support.cli import TINY, run_cli


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cli_env) -> dict:
    """Train 4 steps (one epoch, validated at its end) and return the run folder and its outputs.

    Every test of this folder that needs a trained run uses this one (test_train.py, test_eval_predict.py)
    and must leave it as trained: a test that trains on from it copies the folder first."""
    root = tmp_path_factory.mktemp("train")
    run = root / "run"
    proc = run_cli("train", *TINY, "schedule=cpu_tiny", f"hydra.run.dir={run}", env=cli_env, cwd=root)
    metrics = json.loads((run / "eval" / "val_metrics.json").read_text())
    return {"root": root, "run": run, "stdout": proc.stdout, "metrics": metrics}
