"""What the Hydra programs share: the config folder (and its `msr.run` resolver) and checks of config
values before any work. How they start and fail: msr.cli.entry."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from msr.errors import ConfigError
from msr.layout import register_resolvers, run_dir

log = logging.getLogger(__name__)
register_resolvers()  # the configs name paths inside a run folder as ${msr.run:<name>}

__all__ = ["CONFIG_DIR", "check_config_values", "output_line", "run_dir", "say", "to_dict"]

#: The Hydra configs, shipped inside the package (absolute, so console scripts find them from any folder).
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def check_config_values(
    cfg: DictConfig, whole_numbers: dict[str, int | None], ignore_missing: tuple[str, ...] = ()
) -> None:
    """Raise ConfigError, before any work, for a mandatory value left `???` (but `ignore_missing`, which
    the program fills in) or a key of `whole_numbers` that is not a whole number >= its least value
    (None: any; null values pass)."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if k not in ignore_missing)
    if missing:
        keys = ", ".join(missing)
        raise ConfigError(f"missing values: {keys}; give them on the command line, e.g. {missing[0]}=...")
    for key, least in whole_numbers.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or (least is not None and value < least):
            floor = f" >= {least}" if least is not None else ""
            raise ConfigError(f"{key} must be a whole number{floor}, got {value!r}")


def to_dict(node: Any) -> Any:
    """Return a resolved plain-Python copy of an OmegaConf node (or the value itself)."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node




def say(line: str) -> None:
    """Print `line` on stdout and write it to the run's log file (train.log, evaluate.log, predict.log)."""
    print(line, flush=True)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            record = log.makeRecord(log.name, logging.INFO, __file__, 0, line, None, None)
            handler.handle(record)


def output_line(program: str, folder: Path) -> str:
    """Return the last line of a program: where its outputs are, naming what the run folder holds."""
    if not folder.is_dir():
        return f"{program}: done; nothing written in {folder}"
    names = []
    for item in sorted(folder.iterdir()):
        if item.name.startswith(".") or item.name.endswith(".lock"):
            continue
        if item.is_dir() and item.name in ("checkpoints", "eval"):
            names += [f"{item.name}/{f.name}" for f in sorted(item.iterdir()) if f.is_file()]
        else:
            names.append(f"{item.name}/" if item.is_dir() else item.name)
    return f"{program}: done; outputs in {folder}: {', '.join(names)}"
