"""Experiment tracking: the W&B logger (mode chosen before init), run identity, and run metadata.

`make_wandb_logger` is the `_target_` of msr/conf/logger/wandb.yaml. It decides the W&B mode before
`wandb.init` is ever called, so nothing waits on the network unless the user asked for `online` and
has credentials:

- `offline` (default): the run is written under `<run dir>/wandb/`; `wandb sync <that folder>` uploads it;
- `online`: used when credentials exist (WANDB_API_KEY or a netrc entry for the W&B host), otherwise
  the logger warns and falls back to `offline`;
- `disabled`: wandb runs as a no-op; no file, no process, no socket.

The W&B run id, name and group are stored in `<run dir>/wandb_run.json`, so resuming a run in the same folder
(`ckpt_path=last hydra.run.dir=<run dir>`) continues the same W&B run.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import platform
import secrets
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from msr.compat import cached_experiment, set_cached_experiment
from msr.distributed import get_rank
from msr.files import write_text_atomic

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
RUN_FILE = "wandb_run.json"
#: Distributions whose versions go into every run's config.
TRACKED_PACKAGES = (
    "msr",
    "torch",
    "torchvision",
    "lightning",
    "hydra-core",
    "wandb",
    "faster-coco-eval",
    "pycocotools",
    "numpy",
)


def has_wandb_credentials(host: str | None = None) -> bool:
    """Return True when W&B credentials exist: WANDB_API_KEY, or a netrc entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = host or os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    host = host.split("://", 1)[-1].split("/", 1)[0]
    path = os.environ.get("NETRC") or Path.home() / ".netrc"
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(requested: str, credentials: bool | None = None) -> str:
    """Return the W&B mode to use for `requested` ('online', 'offline' or 'disabled').

    'online' without credentials falls back to 'offline' with a warning; an unknown mode is an error.
    """
    if requested not in MODES:
        raise ValueError(f"logger.mode must be one of {', '.join(MODES)}, got {requested!r}")
    if requested == "online":
        credentials = has_wandb_credentials() if credentials is None else credentials
        if not credentials:
            log.warning(
                "logger.mode=online but no W&B credentials (WANDB_API_KEY or `wandb login`): "
                "logging offline instead; upload later with `wandb sync`"
            )
            return "offline"
    return requested


def persistent_run_identity(folder: str | os.PathLike, name: str, group: str) -> dict[str, str]:
    """Return {'id', 'name', 'group'} of the W&B run of `folder`, stored there on first use.

    A new run gets a random id and the given name and group; a resumed run (the file exists) keeps
    what was stored, so it continues the same W&B run under the same name and group even when it is
    resumed outside the multirun that started it.
    """
    path = Path(folder) / RUN_FILE
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a W&B run identity file ({err}); delete it for a new run") from err
        if isinstance(stored, dict) and stored.get("id"):
            return {"id": str(stored["id"]), **{"name": name, "group": group, **_names(stored)}}
    identity = {"id": secrets.token_hex(4), "name": name, "group": group}
    write_text_atomic(json.dumps(identity) + "\n", path)
    return identity


def _names(stored: dict) -> dict[str, str]:
    """Return the stored name and group (those present)."""
    return {k: str(stored[k]) for k in ("name", "group") if stored.get(k)}


def git_commit(folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """Return {'commit': sha or None, 'dirty': bool or None} of the git checkout holding `folder`."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions(packages: Sequence[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Return {distribution: installed version or None} plus the Python version."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_metadata() -> dict[str, Any]:
    """Return what identifies the code of a run: git commit (and dirtiness) and package versions."""
    return {"git": git_commit(), "versions": package_versions()}


def hydra_run_identity(default_name: str) -> dict[str, Any]:
    """Return {'name', 'group', 'tags'} for the current Hydra job (plain defaults outside Hydra).

    A single run is its own group (`default_name`). All jobs of one multirun share the group
    `<name>/<sweep folder>`; each job is named `<name>-<job number> [<its values of the swept
    parameters>]`. Tags are the chosen config groups (`head:maskiou`, `backbone:resnet18`, ...).
    """
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return {"name": default_name, "group": default_name, "tags": []}
    choices = {k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra/") and v}
    tags = [f"{group}:{choice}" for group, choice in sorted(choices.items())]
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep = Path(hydra_cfg.sweep.dir).name
        swept = swept_keys(sys.argv[1:])
        overrides = ",".join(o for o in hydra_cfg.overrides.task if o.split("=", 1)[0].lstrip("+~") in swept)
        name = f"{default_name}-{hydra_cfg.job.num}" + (f" [{overrides}]" if overrides else "")
        return {"name": name, "group": f"{default_name}/{sweep}", "tags": tags}
    return {"name": default_name, "group": default_name, "tags": tags}


def swept_keys(arguments: Sequence[str]) -> set[str]:
    """Return the keys that a multirun command line sweeps (`seed=0,1`, `lr=range(1,3)`, ...)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    candidates = [a for a in arguments if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except Exception:  # an unparsable command line only costs the run a shorter name
        return set()
    return {o.key_or_group for o in overrides if o.is_sweep_override()}


def make_wandb_logger(
    save_dir: str,
    experiment: str = "msr",
    project: str = "msr",
    entity: str | None = None,
    mode: str = "offline",
    name: str | None = None,
    group: str | None = None,
    tags: Sequence[str] = (),
    job_type: str = "train",
    settings: Mapping[str, Any] | None = None,
) -> Any:
    """Return a WandbLogger writing under `save_dir`, in the mode `resolve_mode` picks.

    The logger (msr.training.wandb_logger.TrainingStepWandbLogger) logs each row at W&B step = the
    training step.

    `experiment` is the msr run name (cfg.name). Name, group and tags default to the Hydra job's
    (`hydra_run_identity(experiment)`); `name`/`group` replace them and extra `tags` are added.
    The run id, name and group persist in `save_dir`: a resumed run continues the same W&B run.
    """
    from msr.training.wandb_logger import TrainingStepWandbLogger

    mode = resolve_mode(mode)
    identity = hydra_run_identity(experiment)
    init: dict[str, Any] = {
        "save_dir": save_dir,
        "project": project,
        "entity": entity,
        "mode": mode,
        "name": name or identity["name"],
        "group": group or identity["group"],
        "tags": sorted({*identity["tags"], *tags}),
        "job_type": job_type,
    }
    if settings:
        import wandb

        init["settings"] = wandb.Settings(**dict(settings))
    if mode != "disabled" and get_rank() == 0:  # other ranks never start a run; no racing writers
        init.update(persistent_run_identity(save_dir, init["name"], init["group"]))
    return TrainingStepWandbLogger(**init)


def wandb_loggers(loggers: Sequence[Any]) -> list[Any]:
    """Return the WandbLoggers among a Trainer's loggers."""
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover - lightning is a dependency
        return []
    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


def finish_wandb(loggers: Sequence[Any]) -> None:
    """Finish the W&B runs of `loggers` (rank 0), so the next job of a multirun starts its own run."""
    for logger in wandb_loggers(loggers):
        run = cached_experiment(logger)
        if run is not None:
            run.finish()
            set_cached_experiment(logger, None)
