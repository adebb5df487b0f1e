"""The jobs of the head stage: a head-only job prepared in its own Hydra job (its folder held, its config
resolved, its loggers, evaluator, evaluation callbacks and checkpoint files), and the same job rebuilt
from its resolved config by the DDP processes Lightning starts for a pass (`write_spec`, `jobs_of_spec`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from msr.compat import hydra_job_config
from msr.errors import ConfigError
from msr.files import write_json_atomic
from msr.layout import RunLayout, run_dir
from msr.run_lock import hold_run_folder, is_resuming
from msr.studies import identity
from msr.studies.head_checkpoints import LAST, JobCheckpoint
from msr.training.assembly import build_callbacks, build_loggers, resolve_ckpt_path
from msr.training.callbacks.base import EvaluationCallback
from msr.training.callbacks.interrupt import InterruptCheckpoint

log = logging.getLogger(__name__)

#: How a trunk file numbers its classes: as msr's labels, or by category id (torchvision's COCO weights).
TRUNK_CLASSES = ("labels", "category_ids")


@dataclass
class HeadJob:
    """One head-only job, prepared: its config (`cfg` as composed, `config` resolved), folder, overrides,
    and the parts that are its own in a pass (loggers, evaluator, evaluation callbacks, checkpoints)."""

    cfg: DictConfig
    config: dict[str, Any]
    folder: Path
    overrides: list[str]
    loggers: list[Any]
    evaluator: Any
    callbacks: list[EvaluationCallback]
    pass_callbacks: list[pl.Callback]
    checkpoint: JobCheckpoint
    resume_from: str | None = None
    hydra: DictConfig | None = None  # the job's Hydra config (with its `hydra` node), None outside Hydra
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # its folder, while it runs

    @property
    def name(self) -> str:
        """Return the job's head overrides (what tells it from the other jobs of its pass)."""
        heads = [o for o in self.overrides if identity.override_role(o) is identity.Role.HEAD]
        return " ".join(heads) or self.folder.name

    @property
    def log_file(self) -> Path:
        """Return the job's log file."""
        return RunLayout(self.folder).log("train")


def check_head_only(cfg: DictConfig) -> None:
    """Raise ConfigError, before any work, for a head-only job that cannot run."""
    if cfg.model.get("maskiou_head") is None:
        raise ConfigError("protocol=head_only trains a MaskIoU head on a frozen trunk: not with head=none")
    classes = cfg.protocol.get("trunk_classes") or "labels"
    if classes not in TRUNK_CLASSES:
        raise ConfigError(
            f"protocol.trunk_classes must be one of {', '.join(TRUNK_CLASSES)}, got {classes!r}"
        )
    if classes != "labels" and not cfg.protocol.get("trunk_weights"):
        raise ConfigError("protocol.trunk_classes=category_ids is for a trunk file (protocol.trunk_weights)")
    if cfg.protocol.get("head_max_epochs") not in (None, 0) and cfg.schedule.max_steps > 0:
        raise ConfigError(
            "protocol.head_max_epochs needs a schedule by epochs; this one stops at "
            f"schedule.max_steps={cfg.schedule.max_steps}"
        )


def _checkpoint_plan(callbacks: DictConfig | None) -> tuple[Path | None, Path | None, dict[str, Any]]:
    """Return (last file, best file, settings) of the job's ModelCheckpoint nodes (None: not written)."""
    last = best = None
    settings: dict[str, Any] = {}
    for node in (callbacks or {}).values():
        if node is None or not str(node.get("_target_", "")).endswith("ModelCheckpoint"):
            continue
        path = Path(node.dirpath) / f"{node.filename}.ckpt"
        if node.get("monitor"):
            best = path
            settings.update(monitor=str(node.monitor), mode=str(node.get("mode", "max")))
        else:
            last = path
            settings.update(
                every_n_train_steps=node.get("every_n_train_steps"),
                on_train_epoch_end=bool(node.get("save_on_train_epoch_end", True)),
            )
    return last, best, settings


def prepare_job(cfg: DictConfig) -> HeadJob:
    """Return the HeadJob of the current Hydra job (its parts built in its own context), its folder held
    (msr.run_lock) until `job.held` is closed, after its pass."""
    check_head_only(cfg)
    folder = run_dir()
    held = contextlib.ExitStack()  # the job holds its folder until its pass has run (msr.run_lock)
    resuming = is_resuming(cfg.ckpt_path, folder)
    held.enter_context(
        hold_run_folder(folder, resuming=resuming, overwrite=bool(cfg.get("overwrite", False)))
    )
    try:
        return _prepared(cfg, folder, held)
    except BaseException:
        held.close()
        raise


def _prepared(cfg: DictConfig, folder: Path, held: contextlib.ExitStack) -> HeadJob:
    """Return the HeadJob of `cfg` in `folder` (held by `held`), its parts built in its Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    loggers = build_loggers(cfg.get("logger"))
    evaluator = instantiate(cfg.evaluation)
    own: list[EvaluationCallback] = []
    shared: list[pl.Callback] = []
    plain = {k: v for k, v in (cfg.callbacks or {}).items() if v is None or not _is_checkpoint(v)}
    for callback in build_callbacks(plain, cfg.trainer):
        if isinstance(callback, EvaluationCallback):
            own.append(callback)
        elif isinstance(callback, InterruptCheckpoint):
            shared.append(InterruptCheckpoint(LAST, on_error=callback.on_error))
        else:
            shared.append(callback)
    last, best, settings = _checkpoint_plan(cfg.callbacks)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, folder)
    # the job's own Hydra config object (its `hydra` node resolves against this job's config), kept as it is
    hydra_config = hydra_job_config()
    return HeadJob(
        cfg=cfg,
        config=OmegaConf.to_container(cfg, resolve=True),
        folder=folder,
        overrides=overrides,
        loggers=loggers,
        evaluator=evaluator,
        callbacks=own,
        pass_callbacks=shared,
        checkpoint=JobCheckpoint({}, last, best, **settings),
        resume_from=ckpt_path,
        hydra=hydra_config,
        held=held,
    )


def _is_checkpoint(node: Any) -> bool:
    return str(node.get("_target_", "")).endswith("ModelCheckpoint")


@contextlib.contextmanager
def job_logs(files: Sequence[Path]) -> Iterator[None]:
    """Within this block, the root logger also writes to every one of `files` (the jobs of a pass)."""
    root = logging.getLogger()
    open_files = {getattr(h, "baseFilename", None) for h in root.handlers}
    template = next((h for h in root.handlers if isinstance(h, logging.FileHandler)), None)
    added = []
    for path in files:
        if str(Path(path).resolve()) in open_files:
            continue
        handler = logging.FileHandler(path)
        handler.setFormatter(
            template.formatter
            if template
            else logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
        )
        root.addHandler(handler)
        added.append(handler)
    try:
        yield
    finally:
        for handler in added:
            root.removeHandler(handler)
            handler.close()


def write_spec(jobs: Sequence[HeadJob], path: Path) -> None:
    """Write the pass's jobs (resolved configs, folders, overrides) for the DDP processes Lightning starts."""
    spec = [{"config": j.config, "folder": str(j.folder), "overrides": j.overrides} for j in jobs]
    write_json_atomic(spec, path)


def jobs_of_spec(path: Path, own: HeadJob) -> list[HeadJob]:
    """Return the jobs of the pass written to `path` (this process's own job among them, as prepared)."""
    jobs = []
    for entry in json.loads(path.read_text()):
        if Path(entry["folder"]) == own.folder:
            own.overrides = list(entry["overrides"])  # this process composed the job from its saved config
            jobs.append(own)
            continue
        cfg = OmegaConf.create(entry["config"])
        job = prepare_job_from(cfg, Path(entry["folder"]), entry["overrides"])
        jobs.append(job)
    return jobs


def prepare_job_from(cfg: DictConfig, folder: Path, overrides: list[str]) -> HeadJob:
    """Return the HeadJob of a resolved config outside its Hydra job (a DDP process of another rank)."""
    last, best, settings = _checkpoint_plan(cfg.callbacks)
    return HeadJob(
        cfg=cfg,
        config=OmegaConf.to_container(cfg, resolve=True),
        folder=folder,
        overrides=list(overrides),
        loggers=[],  # only rank 0 logs
        evaluator=instantiate(cfg.evaluation),
        callbacks=[],  # only rank 0 writes files
        pass_callbacks=[],
        checkpoint=JobCheckpoint({}, last, best, **settings),
        resume_from=resolve_ckpt_path(cfg.ckpt_path, folder),
    )
