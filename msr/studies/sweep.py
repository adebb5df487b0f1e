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


def launch_sweep(
    hydra_context: Any,
    task_function: Any,
    config: DictConfig,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
) -> list[JobReturn]:
    """Run the jobs of `job_overrides` (see the module docstring); return their JobReturns in order."""
    from msr.studies.head_stage import PENDING, collecting

    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info("Launching %d jobs locally", len(job_overrides))
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
    returns: list[JobReturn | None] = [None] * len(configs)
    for unit in plan(configs):
        if len(unit) > 1:
            log.info(
                "head-only protocol: jobs %s share one trunk and train in one pass",
                ", ".join(f"#{initial_job_idx + i}" for i in unit),
            )
        with collecting() as collector:
            for index in unit:
                returns[index] = _run(hydra_context, task_function, configs[index])
                configure_log(config.hydra.hydra_logging, config.hydra.verbose)
        pending = [returns[i] for i in unit if _is_pending(returns[i], PENDING)]
        if pending:
            _settle(pending, collector)
            configure_log(config.hydra.hydra_logging, config.hydra.verbose)
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
