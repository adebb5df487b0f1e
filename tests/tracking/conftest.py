"""Fixtures of the tracking tests: a W&B-friendly subprocess environment and one offline 2-job multirun."""

from __future__ import annotations

import pytest
from support.env import subprocess_env
from wandb_cli import TINY_WANDB, run_cli


@pytest.fixture(scope="session")
def wandb_env(tmp_path_factory) -> dict[str, str]:
    """Return a subprocess environment with no W&B credentials or mode, and private W&B folders."""
    home = tmp_path_factory.mktemp("wandb_home")
    env = subprocess_env(tmp_path_factory.mktemp("msr_cache"))
    env = {k: v for k, v in env.items() if not k.startswith("WANDB_")}
    env.update(
        HOME=str(home),
        WANDB_CONFIG_DIR=str(home / "config"),
        WANDB_CACHE_DIR=str(home / "cache"),
        WANDB_DATA_DIR=str(home / "data"),
    )
    return env


@pytest.fixture(scope="session")
def offline_sweep(tmp_path_factory, wandb_env) -> dict:
    """Run a 2-job multirun (seed=0,1) logging to W&B offline; return the sweep folder and job folders."""
    root = tmp_path_factory.mktemp("sweep")
    sweep = root / "multirun"
    run_cli(
        "train", "--multirun", *TINY_WANDB, "seed=0,1", f"hydra.sweep.dir={sweep}", env=wandb_env, cwd=root
    )
    return {"root": root, "sweep": sweep, "jobs": [sweep / "0", sweep / "1"]}
