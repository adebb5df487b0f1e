"""The trunk stage of the head-only protocol: the frozen Mask R-CNN that every head variant of a job scores.

A job's trunk is either trained by msr or given as a file:

- trained: the job itself without its MaskIoU branch (`head=none`, end to end, the same data, model,
  optimizer, schedule, trainer, init and seed: its TRUNK keys, see msr.studies.identity). It is trained
  the first time a job needs it, as a Hydra job of its own in `<trunk cache>/<key>/run/` (an ordinary
  msr-train run folder: the study's Mask R-CNN reference), and reused afterwards across studies and
  reruns. The key hashes the TRUNK values and the code a trunk depends on. A lock serialises jobs that
  need the same trunk; a trunk whose training was stopped resumes from its last.ckpt.
- a file (`protocol.trunk_weights`): a torchvision Mask R-CNN state_dict (e.g. the COCO weights of
  maskrcnn_resnet50_fpn) or an msr checkpoint, used as it is. Its key hashes the file and the model keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from msr.compat import job_error
from msr.data.synthetic import default_cache_dir
from msr.distributed import get_rank
from msr.errors import ConfigError
from msr.files import read_json, write_json_atomic
from msr.layout import TrunkCacheLayout
from msr.studies import identity

log = logging.getLogger(__name__)

#: Overrides that turn a job's kept overrides into its trunk's msr-train job.
TRUNK_JOB = ("head=none", "protocol=end_to_end", "logger=csv", "name=trunk", "ckpt_path=auto")


@dataclass(frozen=True)
class Trunk:
    """A job's trunk: its key, its weights file, whether msr trained it ("trained") or the user gave it
    ("file"), and, when trained, its own run folder."""

    key: str
    checkpoint: str
    source: str
    run: str | None = None

    def record(self) -> dict[str, Any]:
        """Return the trunk as plain data (what run_config.json and the checkpoints carry)."""
        return asdict(self)


def cache_layout(protocol: Mapping[str, Any]) -> TrunkCacheLayout:
    """Return the trunk cache of a job's `protocol` config (default `$MSR_CACHE_DIR/trunks`)."""
    return TrunkCacheLayout(protocol.get("trunk_cache") or default_cache_dir() / "trunks")


def file_digest(path: str | Path) -> str:
    """Return the SHA-256 of a file's bytes; FileNotFoundError names a missing file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"protocol.trunk_weights: file not found: {path}")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def given_trunk(config: Mapping[str, Any]) -> Trunk:
    """Return the trunk of a job whose `protocol.trunk_weights` names a file."""
    path = Path(config["protocol"]["trunk_weights"]).expanduser().resolve()
    key = identity.trunk_key(config, weights_digest=file_digest(path))
    return Trunk(key, str(path), "file")


class _NoCallbacks:
    """Hydra callbacks for the trunk's own job: none (the sweep's callbacks belong to its jobs)."""

    def on_job_start(self, **kwargs: Any) -> None:
        """Do nothing."""

    def on_job_end(self, **kwargs: Any) -> None:
        """Do nothing."""


def trained_trunk(
    config: Mapping[str, Any],
    overrides: Sequence[str],
    task_function: Callable[[DictConfig], Any],
) -> Trunk:
    """Return the trained trunk of a job (its resolved `config` and its command-line `overrides`), training
    it first when the cache does not hold it.

    `task_function` is msr-train's: the trunk trains as a Hydra job of its own in this process, before any
    head trains. Under DDP with processes from outside (torchrun, srun) every rank takes part in training
    it; rank 0 holds the lock and writes the record. (DDP processes that Lightning starts for a head pass
    start after the trunk is recorded.)
    """
    cache = cache_layout(config["protocol"])
    key = identity.trunk_key(config)
    record = cache.record(key)
    if record.is_file():
        return _read_record(record)
    with _locked(cache.lock(key)) if get_rank() == 0 else contextlib.nullcontext():
        if record.is_file():
            log.info("head-only protocol: trunk %s from the cache (%s)", key, cache.folder(key))
            return _read_record(record)
        kept = [*identity.trunk_overrides(overrides), *TRUNK_JOB]
        run = cache.run(key)
        log.info("head-only protocol: training the trunk %s in %s: %s", key, run.root, " ".join(kept))
        _run_trunk_job(config, kept, run.root, task_function)
        trunk = Trunk(key, str(run.last_checkpoint), "trained", str(run.root))
        if get_rank() == 0:
            info = {**trunk.record(), "overrides": kept, "code": identity.code_fingerprint()}
            from msr.training.tracking import git_commit

            write_json_atomic({**info, "commit": git_commit()}, record)
    return trunk


def _read_record(path: Path) -> Trunk:
    """Return the Trunk of a cache record."""
    info = read_json(path, "trunk record", ConfigError)
    return Trunk(
        str(info["key"]), str(info["checkpoint"]), "trained", str(Path(info["checkpoint"]).parents[1])
    )


def _run_trunk_job(
    config: Mapping[str, Any], overrides: list[str], folder: Path, task_function: Callable[[DictConfig], Any]
) -> None:
    """Train the trunk: msr-train with `overrides` as a Hydra job in `folder` (resumed if stopped before)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import JobStatus, run_job
    from hydra.types import HydraContext, RunMode

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # the outer job's (or the launcher's) logging
    loader = GlobalHydra.instance().config_loader()
    job_config = loader.load_configuration(
        config_name="train", overrides=[*overrides, f"hydra.run.dir={folder}"], run_mode=RunMode.RUN
    )
    _check_same_trunk(config, job_config)
    with open_dict(job_config.hydra):
        job_config.hydra.job.name = "train"
    context = HydraContext(config_loader=loader, callbacks=_NoCallbacks())
    try:
        done = run_job(task_function, job_config, "hydra.run.dir", None, hydra_context=context)
    finally:  # the outer job logs where it logged before
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    if done.status != JobStatus.COMPLETED:
        raise RuntimeError(f"training the head-only protocol's trunk failed: see {folder}/train.log") from (
            job_error(done)
        )


def _check_same_trunk(config: Mapping[str, Any], trunk_config: DictConfig) -> None:
    """Raise ConfigError unless the trunk's composed config has the job's TRUNK values."""
    mine, theirs = identity.trunk_values(config), identity.trunk_values(identity.resolved(trunk_config))
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if differ:
        key = differ[0]
        raise ConfigError(
            f"the trunk composed for this head-only job differs from it in {key} (job: {mine.get(key)!r}, "
            f"trunk: {theirs.get(key)!r}): an override of a head or run setting changes it; set {key} "
            f"on the command line"
        )


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


def read_trunk_record(run_config: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return the trunk record of a run's run_config.json content (None for an end-to-end run).

    Head-only jobs record it under "trunk"; jobs written before the head stage under config.protocol.trunk.
    """
    if isinstance(run_config.get("trunk"), Mapping):
        return dict(run_config["trunk"])
    old = ((run_config.get("config") or {}).get("protocol") or {}).get("trunk")
    return dict(old) if isinstance(old, Mapping) else None
