"""The environment of the programs the tests run as subprocesses."""

from __future__ import annotations

import os
from pathlib import Path

from support.paths import TESTS


def subprocess_env(cache_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """Return this process's environment for a test's subprocess: a private data cache `cache_dir` (if
    given), one thread, W&B off, Hydra's short errors, tests/ importable (support.*), then `extra`."""
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    quiet = {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0", "PYTHONPATH": path}
    cache = {"MSR_CACHE_DIR": str(cache_dir)} if cache_dir is not None else {}
    return {**os.environ, **quiet, **cache, **extra}
