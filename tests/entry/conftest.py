"""Fixtures of the entry-point tests: one tiny training run (synthetic data, 4 steps, narrow heads)
shared by every test of this folder, and the subprocess environment."""

from __future__ import annotations

import json
import os

import pytest
from entry_cli import TINY, run_cli


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory) -> dict[str, str]:
    """Return the environment of the subprocesses: a private data cache, one thread, no W&B network."""
    cache = tmp_path_factory.mktemp("msr_cache")
    return {
        **os.environ,
        "MSR_CACHE_DIR": str(cache),
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "HYDRA_FULL_ERROR": "0",
    }


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cli_env) -> dict:
    """Train 4 steps (one epoch, validated at its end) and return the run folder and its outputs."""
    root = tmp_path_factory.mktemp("train")
    run = root / "run"
    proc = run_cli("train", *TINY, "schedule=cpu_tiny", f"hydra.run.dir={run}", env=cli_env, cwd=root)
    metrics = json.loads((run / "eval" / "val_metrics.json").read_text())
    return {"root": root, "run": run, "stdout": proc.stdout, "metrics": metrics}
