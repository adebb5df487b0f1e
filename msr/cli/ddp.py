"""DDP under Hydra: make Lightning's process relaunch re-run only the current job, and clean up after it.

Lightning starts the extra DDP processes of a plain run (`trainer.devices>1`, no torchrun/srun) by
re-running `sys.argv`. Under a Hydra multirun that command is the whole sweep, so every child would
re-run every job, and the run folder it appends is Hydra's *run* folder, not the job's. `ddp_job_scope`
fixes both for the duration of one job:

- the job's composed config is saved to `<job dir>/.ddp/config.yaml` and `sys.argv` points there
  (`--config-path <job dir>/.ddp --config-name config`), so a child composes exactly this job;
- Hydra's `run.dir` is set to the job folder, which Lightning passes to the children, so every rank
  works in the job's own folder (outputs are written by rank 0 only);
- afterwards `sys.argv`, the launcher's environment variables and the process group are restored,
  and the children are waited for, so the next job of the multirun starts a fresh DDP world.

Processes started from outside (torchrun, SLURM `srun`/submitit) are used as they are: nothing is
pinned or torn down for them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from msr.compat import hydra_job_config
from msr.distributed import launched_externally
from msr.files import write_text_atomic

#: Environment variables Lightning's subprocess launcher sets in the launching process.
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
CONFIG_FOLDER = ".ddp"


def pinned_argv(program: str, config_dir: Path) -> list[str]:
    """Return the argv that makes `program` compose the config saved in `config_dir`/config.yaml."""
    return [program, f"--config-path={config_dir}", "--config-name=config"]


@contextlib.contextmanager
def ddp_job_scope(cfg: DictConfig, folder: Path) -> Iterator[None]:
    """Within this block, a DDP relaunch by Lightning re-runs only this Hydra job, in `folder`."""
    if launched_externally():
        yield
        return
    saved_argv = list(sys.argv)
    saved_env = {k: os.environ.get(k) for k in LAUNCH_ENV}
    hydra_cfg = hydra_job_config()
    saved_run_dir = None
    if hydra_cfg is not None:
        config_dir = folder / CONFIG_FOLDER
        # unresolved: interpolations such as ${hydra:runtime.output_dir} resolve again in the child
        write_text_atomic(OmegaConf.to_yaml(cfg, resolve=False), config_dir / "config.yaml")
        sys.argv[:] = pinned_argv(sys.argv[0], config_dir)
        with read_write(hydra_cfg.hydra), open_dict(hydra_cfg.hydra):
            saved_run_dir = hydra_cfg.hydra.run.dir
            hydra_cfg.hydra.run.dir = str(folder)
    try:
        yield
    finally:
        sys.argv[:] = saved_argv
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if hydra_cfg is not None:
            with read_write(hydra_cfg.hydra), open_dict(hydra_cfg.hydra):
                hydra_cfg.hydra.run.dir = saved_run_dir
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

