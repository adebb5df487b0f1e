"""Launching msr-train's multirun sweeps: every job in this process, head-only jobs that share a trunk in
one pass.

Hydra hands the launcher all jobs of a sweep (of a batch, with a sweeper that proposes batches). Each job
is composed; head-only jobs (`protocol=head_only`, `protocol.shared_pass=true`) with the same pass key
(msr.studies.identity: equal TRUNK and PASS values, so they differ only in their heads and in how they
are recorded) form one pass, which starts where its first job stands in the sweep. Every job still runs
as its own Hydra job, in its own folder, with its own config files and log; the jobs of a pass prepare
themselves there and then train together (msr.studies.head_stage). Other jobs run one after the other
exactly as Hydra's basic launcher runs them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from msr.studies import identity

log = logging.getLogger(__name__)


def pass_key_of(config: DictConfig) -> str | None:
    """Return the pass key of a composed job, None for a job that trains alone (end to end, or head-only
    with `protocol.shared_pass=false`)."""
    if not OmegaConf.select(config, "protocol.head_only", default=False):
        return None
    if not OmegaConf.select(config, "protocol.shared_pass", default=True):
        return None
    return identity.pass_key(identity.resolved(config))


def plan(configs: Sequence[DictConfig]) -> list[list[int]]:
    """Return the sweep's units in order: lists of job indices, a pass with its jobs or a job alone."""
    units: list[list[int]] = []
    by_key: dict[str, list[int]] = {}
    for index, config in enumerate(configs):
        key = pass_key_of(config)
        if key is None:
            units.append([index])
        elif key in by_key:
            by_key[key].append(index)
        else:
            by_key[key] = [index]
            units.append(by_key[key])
    return units


def end_to_end_note(configs: Sequence[DictConfig]) -> str | None:
    """Return one line when end-to-end jobs of the sweep differ only in their MaskIoU heads (they train one
    after the other, where protocol=head_only would train them in one pass), else None."""
    keys: dict[str, int] = {}
    for config in configs:
        if OmegaConf.select(config, "protocol.head_only", default=False):
            continue
        if OmegaConf.select(config, "model.maskiou_head", default=None) is None:
            continue
        key = identity.pass_key(identity.resolved(config))
        keys[key] = keys.get(key, 0) + 1
    shared = max(keys.values(), default=0)
    if shared < 2:
        return None
    return (
        f"protocol=end_to_end: the {shared} jobs that differ only in their MaskIoU head train one after the "
        f"other, each end to end; protocol=head_only would train their heads in one pass on a shared trunk"
    )


def compose_jobs(
    hydra_context: Any, config: DictConfig, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[DictConfig]:
    """Return the composed config of every job of the sweep, numbered from `initial_job_idx`."""
    configs = []
    for offset, overrides in enumerate(job_overrides):
        number = initial_job_idx + offset
        log.info("\t#%d : %s", number, " ".join(filter_overrides(overrides)))
        job_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(job_config):
            job_config.hydra.job.id = number
            job_config.hydra.job.num = number
        configs.append(job_config)
    note = end_to_end_note(configs)
    if note:
        log.info(note)
    return configs


def launch_sweep(
    hydra_context: Any,
    task_function: Any,
    config: DictConfig,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
) -> list[JobReturn]:
    """Run the jobs of `job_overrides` (see the module docstring); return their JobReturns in order."""
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info("Launching %d jobs locally", len(job_overrides))
    configs = compose_jobs(hydra_context, config, job_overrides, initial_job_idx)
    returns: list[JobReturn | None] = [None] * len(configs)
    for unit in plan(configs):
        for index, ret in zip(unit, run_unit(hydra_context, task_function, [configs[i] for i in unit])):
            returns[index] = ret
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    return returns


def run_unit(hydra_context: Any, task_function: Any, configs: Sequence[DictConfig]) -> list[JobReturn]:
    """Run one unit of a sweep: a job alone, or the jobs of one pass (each prepares itself in its own
    Hydra job, then they train together); return their JobReturns in order."""
    from msr.studies.head_stage import PENDING, collecting

    if len(configs) > 1:
        numbers = ", ".join(f"#{c.hydra.job.num}" for c in configs)
        log.info("head-only protocol: jobs %s share one trunk and train in one pass", numbers)
    returns = []
    with collecting() as collector:
        for job_config in configs:
            returns.append(_run(hydra_context, task_function, job_config))
    pending = [ret for ret in returns if _is_pending(ret, PENDING)]
    if pending:
        _settle(pending, collector)
    return returns


def _run(hydra_context: Any, task_function: Any, job_config: DictConfig) -> JobReturn:
    """Run one job as Hydra's basic launcher does."""
    return run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=job_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def _is_pending(ret: JobReturn | None, pending: str) -> bool:
    """Return True for a job that prepared itself for a pass and waits for it."""
    return ret is not None and ret.status == JobStatus.COMPLETED and ret.return_value == pending


def _settle(pending: Sequence[JobReturn], collector: Any) -> None:
    """Run the collected pass and give each waiting job its value (or the pass's error)."""
    try:
        values = collector.run()
    except Exception as err:  # every job of the pass failed with it; Hydra reports it at the end
        log.exception("the shared head pass failed")
        for ret in pending:
            ret.status, ret.return_value = JobStatus.FAILED, err
        return
    by_folder = {job.folder.resolve(): value for job, value in zip(collector.jobs, values)}
    for ret in pending:
        ret.return_value = by_folder[Path(ret.hydra_cfg.hydra.runtime.output_dir).resolve()]


# -- SLURM (submitit): one cluster job per unit ---------------------------------------------------------
#: Marks a unit of several jobs passed through submitit as one job's overrides.
UNIT_MARK = "msr_pass_unit="


def units_for_submitit(
    hydra_context: Any, config: DictConfig, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> tuple[list[list[str]], list[int]]:
    """Return (overrides of each unit for submitit, number of jobs of each unit): a job alone keeps its own
    overrides; a pass becomes one entry holding its jobs' overrides and numbers (`UNIT_MARK`)."""
    configs = compose_jobs(hydra_context, config, job_overrides, initial_job_idx)
    units, sizes = [], []
    for unit in plan(configs):
        sizes.append(len(unit))
        if len(unit) == 1:
            units.append(list(job_overrides[unit[0]]))
            continue
        members = [{"overrides": list(job_overrides[i]), "number": initial_job_idx + i} for i in unit]
        units.append([UNIT_MARK + json.dumps(members)])
    return units, sizes


def run_submitit_unit(
    hydra_context: Any, task_function: Any, config: DictConfig, sweep_overrides: Sequence[str]
) -> list[JobReturn] | None:
    """Run a pass that submitit started as one cluster job (its every task, under DDP); None when
    `sweep_overrides` are one job's own (submitit runs it as usual)."""
    if len(sweep_overrides) != 1 or not sweep_overrides[0].startswith(UNIT_MARK):
        return None
    setup_globals()
    configs = []
    for member in json.loads(sweep_overrides[0][len(UNIT_MARK) :]):
        job_config = hydra_context.config_loader.load_sweep_config(config, member["overrides"])
        with open_dict(job_config):
            job_config.hydra.job.num = member["number"]
        configs.append(job_config)
    return run_unit(hydra_context, task_function, configs)


def in_job_order(returns: Sequence[Any], sizes: Sequence[int]) -> list[JobReturn]:
    """Return the JobReturns of every job from submitit's results of the units (a list for a pass)."""
    out: list[JobReturn] = []
    for ret, size in zip(returns, sizes):
        out += list(ret) if size > 1 else [ret]
    return out
