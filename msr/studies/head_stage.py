"""The head stage of the head-only protocol: the MaskIoU heads of one or many jobs, trained in one pass on
their shared frozen trunk.

msr-train hands every `protocol=head_only` job here (`run_head_only_job`). A job on its own is a pass of
one. In a multirun, msr's launcher (hydra_plugins/msr_launcher) first lets every job of a group prepare
itself inside its own Hydra job (its folder, config files, loggers, evaluator and callbacks) while
`collecting()` holds them back, then runs the group in one pass: the trunk once per batch, each job's
head, target and loss on the same RoIs, detection once per evaluation, and each job's own files
(run_config.json, metrics, results, checkpoints, logger runs) written into its own folder as if it had
run alone. With fixed seeds a job ends with the same head and results whether it trained alone or in a
pass: every head starts from its seed alone and consumes no random numbers, so the trunk's draws (resize
choice, RoI sampling) follow the same sequence.

Jobs that resume (`ckpt_path=auto|last`) are grouped by the step their checkpoints were saved at. Under
DDP every rank runs the pass: processes from torchrun or srun run the sweep themselves; the processes
Lightning starts for a plain `trainer.devices>1` run read the pass from `<first job>/.ddp/head_pass.json`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from msr.compat import use_hydra_config
from msr.distributed import get_rank, launched_externally, wait_for_children
from msr.errors import ConfigError
from msr.evaluation.tables import metrics_table
from msr.files import write_json_atomic
from msr.layout import RunLayout
from msr.studies import identity
from msr.studies.head_checkpoints import RESUME, JobCheckpoint, SplitCheckpointIO, VariantCheckpoints
from msr.studies.head_jobs import HeadJob, job_logs, jobs_of_spec, prepare_job, write_spec
from msr.studies.head_module import HeadStageModule, Variant
from msr.studies.trunk import Trunk, given_trunk, trained_trunk
from msr.studies.variant_loggers import VariantLoggers
from msr.training.assembly import net_config
from msr.training.checkpoints import read_checkpoint
from msr.training.resume import ExactResume
from msr.training.rng_state import RngStateCallback
from msr.training.tracking import finish_wandb, run_metadata, wandb_loggers

log = logging.getLogger(__name__)

#: Environment variable that points the DDP processes Lightning starts for a pass at its jobs.
PASS_ENV = "MSR_HEAD_PASS"
#: What a job prepared for a pass returns from its Hydra job (its value comes when the pass has run).
PENDING = "pending: trained in a shared head pass"

TaskFunction = Callable[[DictConfig], Any]
DDPScope = Callable[[DictConfig, Path], contextlib.AbstractContextManager]


# -- collecting the jobs of a pass ----------------------------------------------------------------------
@dataclass
class PassCollector:
    """The jobs a launcher holds back for one pass, and how to train a trunk and pin DDP processes."""

    jobs: list[HeadJob] = field(default_factory=list)
    task_function: TaskFunction | None = None
    ddp_scope: DDPScope | None = None

    def run(self) -> list[float | None]:
        """Run the collected jobs in one pass; return each one's optimized metric (in job order)."""
        if not self.jobs:
            return []
        try:
            return run_pass(self.jobs, self.task_function, self.ddp_scope)
        finally:
            for job in self.jobs:
                job.held.close()


_collector: ContextVar[PassCollector | None] = ContextVar("msr_head_pass_collector", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[PassCollector]:
    """Within this block, head-only jobs prepare themselves and wait (returning PENDING) instead of
    training; the collector then runs them in one pass."""
    collector = PassCollector()
    token = _collector.set(collector)
    try:
        yield collector
    finally:
        _collector.reset(token)


def run_head_only_job(cfg: DictConfig, task_function: TaskFunction, ddp_scope: DDPScope | None = None) -> Any:
    """Train the MaskIoU head of the head-only job `cfg`; return its optimized metric (None when not
    evaluated), or PENDING while a launcher collects the jobs of a pass.

    `task_function` trains a trunk (msr-train's job function); `ddp_scope(cfg, folder)` pins the DDP
    processes Lightning starts to a job (msr.cli.ddp.ddp_job_scope).
    """
    job = prepare_job(cfg)
    collector = _collector.get()
    if collector is not None:
        collector.jobs.append(job)
        collector.task_function, collector.ddp_scope = task_function, ddp_scope
        return PENDING
    spec = os.environ.get(PASS_ENV)
    jobs = jobs_of_spec(Path(spec), job) if spec and get_rank() != 0 else [job]
    with job.held:
        values = run_pass(jobs, task_function, ddp_scope)
    return values[[j.folder for j in jobs].index(job.folder)]


# -- the pass -------------------------------------------------------------------------------------------
def run_pass(jobs: Sequence[HeadJob], task_function: TaskFunction | None, ddp_scope: DDPScope | None) -> list:
    """Train the heads of `jobs` (one pass per resume state); return each job's optimized metric."""
    keys = {identity.pass_key(j.config) for j in jobs}
    if len(keys) != 1:
        raise ConfigError("these head-only jobs differ in more than their heads and cannot share a pass")
    values: dict[Path, Any] = {}
    for part in _by_resume_step(jobs):
        for job, value in zip(part, _run_one_pass(part, task_function, ddp_scope)):
            values[job.folder] = value
    return [values[j.folder] for j in jobs]


def _by_resume_step(jobs: Sequence[HeadJob]) -> list[list[HeadJob]]:
    """Return the jobs grouped by the global step of the checkpoint they resume from (None: fresh)."""
    groups: dict[int | None, list[HeadJob]] = {}
    for job in jobs:
        step = None
        if job.resume_from is not None:
            step = int(
                torch.load(job.resume_from, map_location="cpu", weights_only=True, mmap=True).get(
                    "global_step", -1
                )
            )
        groups.setdefault(step, []).append(job)
    return list(groups.values())


def _trunk_of(job: HeadJob, task_function: TaskFunction | None) -> Trunk:
    """Return the pass's trunk: the file the job names, or the trunk msr trains and caches."""
    if job.config["protocol"].get("trunk_weights"):
        return given_trunk(job.config)
    if task_function is None:
        raise ConfigError("the trunk of this head-only job is not trained yet and no trainer was given")
    return trained_trunk(job.config, job.overrides, task_function)


def _run_one_pass(
    jobs: Sequence[HeadJob], task_function: TaskFunction | None, ddp_scope: DDPScope | None
) -> list[float | None]:
    """Train and evaluate the heads of `jobs` on their trunk; return each job's optimized metric."""
    with _in_job(jobs[0]):
        return _train_pass(jobs, task_function, ddp_scope)


@contextlib.contextmanager
def _in_job(job: HeadJob) -> Iterator[None]:
    """Within this block, Hydra's current job is `job` (DDP processes Lightning starts follow it)."""
    if job.hydra is None:
        yield
        return
    with use_hydra_config(job.hydra):
        yield


def _train_pass(
    jobs: Sequence[HeadJob], task_function: TaskFunction | None, ddp_scope: DDPScope | None
) -> list[float | None]:
    """Train and evaluate the heads of `jobs` on their trunk (in the first job's Hydra context)."""
    first = jobs[0]
    config = first.config
    trunk = _trunk_of(first, task_function)  # trained first if needed: it seeds and draws on its own
    where = trunk.run or trunk.checkpoint
    if config["protocol"].get("head_max_epochs") == 0:
        log.info(
            "head-only protocol: trunk %s is ready (%s); protocol.head_max_epochs=0 trains no head",
            trunk.key,
            where,
        )
        return [None] * len(jobs)
    pl.seed_everything(config["seed"], workers=True)
    with job_logs([j.log_file for j in jobs]):
        log.info(
            "head-only protocol: %d head%s in one pass on %s (%s): %s",
            len(jobs),
            "s" * (len(jobs) != 1),
            trunk.key,
            where,
            ", ".join(j.name for j in jobs),
        )
        datamodule = instantiate(config["data"], _convert_="all")
        net = _trunk_net(config, trunk, datamodule)
        module = HeadStageModule(
            net,
            [_branch(job.config, net, datamodule.num_classes) for job in jobs],
            [Variant(j.name, j.evaluator, j.callbacks, tuple(j.loggers)) for j in jobs],
            optimizer=instantiate(config["optimizer"]),
            scheduler=instantiate(config["schedule"]["scheduler"]),
            label_to_cat_id=datamodule.label_to_cat_id,
            nonfinite_loss=config["module"]["nonfinite_loss"],
            lr_reference_batch=config["module"]["lr_reference_batch"],
            no_decay_norm_bias=config["module"]["no_decay_norm_bias"],
        )
        trainer, io = _trainer(jobs, module, _job_checkpoints(jobs, trunk, datamodule))
        resume = _resume(jobs, io, module)
        for index, job in enumerate(jobs):
            record = {"config": job.config, "run": run_metadata(), "trunk": trunk.record()}
            if trainer.is_global_zero:
                write_json_atomic(record, RunLayout(job.folder).run_config)
            trainer.logger.log_variant_hyperparams(index, {"config": job.config, "trunk": trunk.record()})
        try:
            with _pass_scope(jobs, ddp_scope):
                trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
                last = module.last_evaluations
                evaluated = all(e is not None and e.global_step == trainer.global_step for e in last)
                if config["final_eval"] and datamodule.val_ann is not None and not evaluated:
                    trainer.validate(module, datamodule=datamodule, verbose=False)
                wait_for_children(trainer)
        finally:
            for job in jobs:
                finish_wandb(job.loggers)
        return [_report(job, evaluation, trainer) for job, evaluation in zip(jobs, module.last_evaluations)]


def _trunk_net(config: dict[str, Any], trunk: Trunk, datamodule: Any) -> Any:
    """Return the pass's detector without MaskIoU head, holding the trunk's weights."""
    from msr.models import load_weights

    net = instantiate(
        config["model"],
        num_classes=datamodule.num_classes,
        maskiou_head=None,
        maskiou_target=None,
        maskiou_loss=None,
    )
    rows = None
    if config["protocol"].get("trunk_classes") == "category_ids":  # torchvision's COCO numbering
        labels = datamodule.label_to_cat_id
        rows = [0, *(labels[k] for k in sorted(labels))]
    init = config["init"]
    load_weights(
        net,
        trunk.checkpoint,
        allow_class_mismatch=bool(init["allow_class_mismatch"]),
        class_rows=rows,
        trust_pickle=bool(init.get("trust_pickle", False)),
    )
    return net


def _branch(config: dict[str, Any], net: Any, num_classes: int) -> Any:
    """Return a job's MaskIoU branch on the trunk `net`; its head starts from the job's seed alone (the
    global random draws are untouched)."""
    from msr.models.maskiou.branch import MaskIoUBranch

    model = OmegaConf.create(config["model"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config["seed"]))
        head = instantiate(model.maskiou_head)(num_classes=num_classes, in_channels=net.backbone.out_channels)
    target = instantiate(model.maskiou_target) if model.get("maskiou_target") else None
    loss = instantiate(model.maskiou_loss) if model.get("maskiou_loss") else None
    return MaskIoUBranch(head, net.roi_heads.mask_roi_pool, target, loss, model.maskiou_detach)


def _job_checkpoints(jobs: Sequence[HeadJob], trunk: Trunk, datamodule: Any) -> list[JobCheckpoint]:
    """Return each job's checkpoint plan with what its checkpoints must hold to rebuild it alone
    (MSRModule's hyper-parameters, its own model config, the trunk)."""
    module = jobs[0].config["module"]
    shared = {
        "class_names": datamodule.class_names,
        "label_to_cat_id": datamodule.label_to_cat_id,
        "data_config": jobs[0].config["data"],
        "nonfinite_loss": module["nonfinite_loss"],
        "lr_reference_batch": module["lr_reference_batch"],
        "no_decay_norm_bias": module["no_decay_norm_bias"],
        "eval_frozen_norms": True,
        "trunk": trunk.record(),
    }
    return [
        replace(
            job.checkpoint,
            hyper_parameters={
                **shared,
                "net_config": net_config(job.config["model"], datamodule.num_classes),
            },
        )
        for job in jobs
    ]


def _trainer(
    jobs: Sequence[HeadJob], module: HeadStageModule, checkpoints: list[JobCheckpoint]
) -> tuple[pl.Trainer, SplitCheckpointIO]:
    """Return the pass's Trainer (the first job's trainer config, the heads' epochs) and checkpoint I/O."""
    config = jobs[0].config
    groups = _group_indices(module)
    io = SplitCheckpointIO(checkpoints, groups)
    saver = VariantCheckpoints(checkpoints)
    io.callback_key = saver.state_key
    if any(wandb_loggers(j.loggers) for j in jobs) and len(jobs) > 1:
        _one_wandb_run_per_job()
    head_epochs = config["protocol"].get("head_max_epochs")
    length = {"max_epochs": head_epochs} if head_epochs is not None else {}
    trainer: pl.Trainer = instantiate(
        config["trainer"],
        callbacks=[ExactResume(), RngStateCallback(), *jobs[0].pass_callbacks, saver],
        logger=VariantLoggers([j.loggers for j in jobs], [len(g) for g in groups]),
        plugins=[io],
        enable_checkpointing=False,
        default_root_dir=str(jobs[0].folder),
        **length,
    )
    return trainer, io


def _group_indices(module: HeadStageModule) -> list[list[int]]:
    """Return each branch's optimizer parameter-group indices (as configure_optimizers will number them)."""
    from msr.training.optim import parameter_groups

    counts = [len(parameter_groups(b.head, module.no_decay_norm_bias)) for b in module.branches]
    starts = [sum(counts[:i]) for i in range(len(counts))]
    return [list(range(s, s + c)) for s, c in zip(starts, counts)]


def _resume(jobs: Sequence[HeadJob], io: SplitCheckpointIO, module: HeadStageModule) -> str | None:
    """Return the path the pass resumes from (RESUME, its jobs' checkpoints merged) or None (fresh)."""
    paths = [j.resume_from for j in jobs]
    if all(p is None for p in paths):
        return None
    for job in jobs:
        _check_resumable(job, module, jobs.index(job))
    io.resume_from = [Path(p) for p in paths]
    return RESUME


def _check_resumable(job: HeadJob, module: HeadStageModule, index: int) -> None:
    """Raise ConfigError unless the job's checkpoint holds a training state of this job's head."""
    from msr.studies.head_checkpoints import HEAD_PREFIX

    checkpoint = read_checkpoint(job.resume_from)
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise ConfigError(f"{job.resume_from}: holds weights only, not a training state to resume")
    saved = {
        k.removeprefix(HEAD_PREFIX): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith(HEAD_PREFIX)
    }
    here = module.branches[index].head.state_dict()
    differ = [k for k in here if k not in saved or tuple(saved[k].shape) != tuple(here[k].shape)]
    if differ or len(saved) != len(here):
        key = differ[0] if differ else sorted(set(saved) - set(here))[0]
        raise ConfigError(
            f"{job.resume_from}: cannot resume this job's MaskIoU head from it ({key} differs); resume with "
            f"the head it was trained with, or start the job in a new folder"
        )


def _report(job: HeadJob, evaluation: Any, trainer: pl.Trainer) -> float | None:
    """Print the job's metrics table (rank 0); return its optimized metric (None when not evaluated)."""
    if evaluation is None:
        return None
    metrics = evaluation.result.metrics
    if trainer.is_global_zero:
        print(
            metrics_table(
                metrics, f"{job.config['name']}: val metrics after {trainer.global_step} steps ({job.folder})"
            )
        )
    value = metrics.get(str(job.config["optimized_metric"]).removeprefix("val/"))
    return float(value) if value is not None else None


def _one_wandb_run_per_job() -> None:
    """Make every WandbLogger of this process start a W&B run of its own (several are open at once)."""
    import wandb

    wandb.setup(settings=wandb.Settings(reinit="create_new"))


# -- logs and DDP -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _pass_scope(jobs: Sequence[HeadJob], ddp_scope: DDPScope | None) -> Iterator[None]:
    """Within this block, DDP processes Lightning starts run this pass (see the module docstring)."""
    if ddp_scope is None:
        yield
        return
    first = jobs[0]
    spec = RunLayout(first.folder).path("ddp") / "head_pass.json"
    external = launched_externally()
    if not external:
        write_spec(jobs, spec)
        os.environ[PASS_ENV] = str(spec)
    try:
        with ddp_scope(first.cfg, first.folder):
            yield
    finally:
        if not external:
            os.environ.pop(PASS_ENV, None)
