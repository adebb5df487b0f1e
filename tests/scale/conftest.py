"""Fixtures of the scale-out tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def scale_env(tmp_path_factory) -> dict[str, str]:
    """Return the subprocess environment: private data cache, one thread per process, W&B off."""
    return {
        **os.environ,
        "MSR_CACHE_DIR": str(tmp_path_factory.mktemp("msr_cache")),
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "HYDRA_FULL_ERROR": "0",
    }
