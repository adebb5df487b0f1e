"""Fixtures of the robustness tests: the uninterrupted run of the fault-injection test, a one-step msr-train
checkpoint trained in this process (what the other tests read), and the results of the entry-point cases of
batch_cases.py, run once in one process."""

from __future__ import annotations

from pathlib import Path

import pytest
from batch_cases import build
from robust_cli import EPOCHS_RUN, TINY, run_batch, run_cli
from support.cli_batch import run_case

#: One training step on 4 synthetic pictures (6 categories), no evaluation: a checkpoint to read.
ONE_STEP = [o for o in TINY if not o.startswith("data.num_train")] + [
    "data.num_train=4",
    "schedule=cpu_tiny",
    "schedule.max_steps=1",
    "final_eval=false",
    "callbacks.figures=null",
]


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory, cli_env) -> Path:
    """Return the folder of the uninterrupted run of the fault-injection test (robust_cli.EPOCHS_RUN)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    run_cli("train", *EPOCHS_RUN, f"hydra.run.dir={root / 'run'}", env=cli_env, cwd=root)
    return root / "run"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, cli_env) -> Path:
    """Return the last.ckpt of a one-step msr-train run (synthetic set, 6 categories), which msr-train's own
    entry point trains in this process (no interpreter to start, no evaluation)."""
    run = tmp_path_factory.mktemp("checkpoint") / "run"
    result = run_case("train", [*ONE_STEP, f"hydra.run.dir={run}"], cli_env)
    assert result["rc"] == 0, result["stderr"][-3000:]
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def batch(tmp_path_factory, cli_env, checkpoint) -> dict[str, dict]:
    """Return {case: {"rc", "stdout", "stderr", "root"}} of every case of batch_cases.py (one process)."""
    root = tmp_path_factory.mktemp("batch")
    results = run_batch(build(root, checkpoint), cli_env, root)
    for result in results.values():
        result["root"] = root
    return results
