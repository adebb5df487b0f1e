"""Fixtures of the robustness tests: the uninterrupted run of the
fault-injection test (whose checkpoint the other tests use), and the results of the entry-point cases of
batch_cases.py, run once in one process."""

from __future__ import annotations

from pathlib import Path

import pytest
from batch_cases import build
from robust_cli import EPOCHS_RUN, run_batch, run_cli


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory, cli_env) -> Path:
    """Return the folder of the uninterrupted run of the fault-injection test (robust_cli.EPOCHS_RUN)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    run_cli("train", *EPOCHS_RUN, f"hydra.run.dir={root / 'run'}", env=cli_env, cwd=root)
    return root / "run"


@pytest.fixture(scope="session")
def checkpoint(uninterrupted) -> Path:
    """Return an msr-train checkpoint (synthetic set, 6 categories): the uninterrupted run's last.ckpt."""
    return uninterrupted / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def batch(tmp_path_factory, cli_env, checkpoint) -> dict[str, dict]:
    """Return {case: {"rc", "stdout", "stderr", "root"}} of every case of batch_cases.py (one process)."""
    root = tmp_path_factory.mktemp("batch")
    results = run_batch(build(root, checkpoint), cli_env, root)
    for result in results.values():
        result["root"] = root
    return results
