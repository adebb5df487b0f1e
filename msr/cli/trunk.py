"""The head-only protocol's trunk: one Mask R-CNN per seed and setting, trained once and cached.

With `protocol=head_only` a job trains only its MaskIoU head, on a frozen Mask R-CNN "trunk" (backbone,
RPN, box and mask heads). The trunk is the job's own run without the MaskIoU branch (`head=none`, the
same data, model widths, optimizer, schedule, trainer and seed), so every head variant of a seed scores
the very same boxes and masks and their differences are pure head effects. It is trained the first time
a job needs it, by a plain `msr-train` run in `<trunk cache>/<key>/run/`, and reused afterwards, across
studies and reruns: `<key>` hashes the trunk's resolved config. A lock file serialises jobs that need the
same trunk at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from msr.data.synthetic import default_cache_dir
from msr.distributed import get_rank
from msr.errors import ConfigError
from msr.files import write_json_atomic
from msr.training.tracking import git_commit

log = logging.getLogger(__name__)

#: Overrides that do not shape the trunk: the MaskIoU branch, the protocol, sweeps, outputs, logging.
NOT_TRUNK = (
    "head",
    "maskiou_target",
    "maskiou_loss",
    "model.maskiou_",
    "protocol",
    "study",
    "hparams_search",
    "hydra",
    "logger",
    "callbacks",
    "evaluation",
    "name",
    "ckpt_path",
    "init.freeze_except_maskiou",
)
#: Config nodes whose resolved values make up the trunk's identity.
TRUNK_NODES = ("model", "data", "optimizer", "schedule", "module", "trainer", "init", "seed")
#: Environment variables of an outer launcher that the trunk's own msr-train must not inherit.
LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "GROUP_RANK")
DONE_FILE = "trunk.json"


def trunk_overrides(task_overrides: Sequence[str]) -> list[str]:
    """Return the msr-train overrides of the trunk of a job with `task_overrides`."""
    kept = [o for o in task_overrides if not o.split("=", 1)[0].lstrip("+~").startswith(NOT_TRUNK)]
    return [*kept, "head=none", "protocol=end_to_end", "logger=csv", "name=trunk"]


def trunk_key(config: DictConfig) -> str:
    """Return the cache key of a trunk: a hash of its resolved config's training-relevant nodes."""
    nodes = {}
    for name in TRUNK_NODES:
        node = OmegaConf.select(config, name)
        nodes[name] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    blob = json.dumps(nodes, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def compose_trunk(config_dir: str, overrides: Sequence[str]) -> DictConfig:
    """Return the composed msr-train config of the trunk (inside a Hydra app through its own Hydra)."""
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=list(overrides))
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def prepare_trunk(
    cfg: DictConfig, task_overrides: Sequence[str], config_dir: str, wait_s: float = 24 * 3600
) -> dict[str, Any]:
    """Return {"key", "checkpoint", "folder"} of the job's trunk, training it first when it is not cached.

    Rank 0 trains it (a plain msr-train in a subprocess); other ranks wait for its checkpoint.
    """
    overrides = trunk_overrides(task_overrides)
    key = trunk_key(compose_trunk(config_dir, overrides))
    cache = Path(cfg.protocol.trunk_cache or default_cache_dir() / "trunks").expanduser()
    folder = cache / key
    done = folder / DONE_FILE
    if get_rank() != 0:
        _wait_for(done, wait_s)
    else:
        with _locked(cache / f"{key}.lock"):
            if not done.is_file():
                _train(folder, overrides)
                checkpoint = folder / "run" / "checkpoints" / "last.ckpt"
                record = {"key": key, "overrides": overrides, "checkpoint": str(checkpoint)}
                write_json_atomic({**record, "code": git_commit()}, done)
            else:
                log.info("head-only protocol: trunk %s from the cache (%s)", key, folder)
    info = json.loads(done.read_text())
    _warn_if_other_code(key, info.get("code"))
    return {"key": key, "checkpoint": info["checkpoint"], "folder": str(folder)}


def _warn_if_other_code(key: str, trained_with: dict[str, Any] | None) -> None:
    """Log a warning when the cached trunk was trained by other code than this checkout's.

    The cache key hashes the trunk's config, not the code: a change to the model or the training loop
    leaves old trunks in use, which is what a study wants across reruns but must not go unnoticed.
    """
    now = git_commit()
    if not trained_with or not now.get("commit") or trained_with.get("commit") == now["commit"]:
        return
    log.warning(
        "head-only protocol: trunk %s was trained at commit %s%s, this checkout is %s%s; "
        "delete its folder to train it again",
        key,
        trained_with.get("commit"),
        " (uncommitted changes)" if trained_with.get("dirty") else "",
        now["commit"],
        " (uncommitted changes)" if now.get("dirty") else "",
    )


def _train(folder: Path, overrides: Sequence[str]) -> None:
    """Train the trunk with msr-train in `folder`/run; raise ConfigError naming its log if it fails.

    An attempt that was stopped (killed, preempted) before the trunk was recorded as done left its
    last.ckpt: the next attempt resumes from it (`ckpt_path=auto`) instead of starting over.
    """
    run = folder / "run"
    command = [sys.executable, "-m", "msr.cli.train", *overrides, "ckpt_path=auto", f"hydra.run.dir={run}"]
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    log.info("head-only protocol: training the trunk in %s: %s", run, " ".join(command[3:]))
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "train_stdout.log").open("a") as out:  # an earlier attempt's output stays
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise ConfigError(f"training the head-only protocol's trunk failed; see {folder}/train_stdout.log")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait_for(path: Path, timeout_s: float) -> None:
    """Wait until `path` exists (rank 0 is training the trunk); raise ConfigError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise ConfigError(f"waited {timeout_s:.0f} s for the head-only protocol's trunk ({path})")
        time.sleep(5)
