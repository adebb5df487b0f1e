"""Misspelt keys and choices, caught before any work with the closest names that exist.

- `override_error_message(err, program)`: the one line for what Hydra refuses while composing (a key that
  is not in the config, a choice or group that does not exist), with "did you mean ...?".
- `check_added_keys(cfg, overrides)`: a key added with `+key=value` that no part of msr reads raises
  ConfigError. A key is read when a node on its path names a `_target_` whose callable takes it (or any
  keyword), or when it lies in a documented open node (`data` of msr-eval/msr-predict with
  `data=checkpoint`: any key a data config has).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from msr.errors import ConfigError

#: The Hydra configs (the same folder as msr.cli.common.CONFIG_DIR; not imported: no cycle, no cost).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"
#: Groups that exist for sweeps and Hydra's own machinery, not as a run's menu.
_HIDDEN_GROUPS = {"hydra"}


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ' (did you mean a or b?)' for the closest of `candidates` to `name`, or '' if none is close."""
    names = sorted({c for c in candidates if not c.rsplit(".", 1)[-1].startswith("_")})
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if not close:  # the last part may be the typo: compare it alone ("schedule.max_step" -> "max_steps")
        tail = name.rsplit(".", 1)[-1]
        by_tail = {c.rsplit(".", 1)[-1]: c for c in names if c.rsplit(".", 1)[0] == name.rpartition(".")[0]}
        close = [by_tail[t] for t in difflib.get_close_matches(tail, list(by_tail), n=1, cutoff=0.6)]
    return f" (did you mean {close[0]}?)" if close else ""


def key_paths(node: DictConfig, prefix: str = "") -> list[str]:
    """Return the dotted path of every key under `node` (nested ones too; `hydra` left out)."""
    paths: list[str] = []
    for key in node:
        if not prefix and key == "hydra":
            continue
        path = f"{prefix}{key}"
        paths.append(path)
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            paths.extend(key_paths(child, f"{path}."))
    return paths


def public_groups() -> dict[str, list[str]]:
    """Return {config group: its public choices} of msr/conf (files starting with `_` left out)."""
    groups: dict[str, list[str]] = {}
    for folder in sorted(p for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name not in _HIDDEN_GROUPS):
        groups[folder.name] = sorted(f.stem for f in folder.glob("*.yaml") if not f.name.startswith("_"))
    return groups


def override_error_message(err: BaseException, program: str) -> str | None:
    """Return one line for a Hydra composition error from a misspelt key, group or choice (None: other)."""
    from hydra.errors import ConfigCompositionException, MissingConfigException

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, _, choice = err.missing_cfg_file.rpartition("/")
        options = [o for o in (err.options or []) if not o.startswith("_")]
        hint = did_you_mean(choice, options).replace("mean ", f"mean {group}=")
        listed = ", ".join(options)
        return f"unknown choice {group}={choice}{hint}; the choices of {group}: {listed}"
    if not isinstance(err, ConfigCompositionException):
        return None
    cause = err.__cause__
    key = getattr(cause, "full_key", None)
    first = str(err).splitlines()[0] if str(err) else ""
    if not key or not first.startswith("Could not override"):
        return None
    parent = getattr(cause, "parent_node", None)
    prefix = key.rpartition(".")[0]
    siblings = [f"{prefix}.{k}" if prefix else str(k) for k in parent] if parent is not None else []
    if not prefix:
        siblings = [k for k in siblings if k != "hydra"] + list(public_groups())
    hint = did_you_mean(key, siblings)
    value = str(err).split(f"use +{key}=", 1)[1].strip() if f"use +{key}=" in str(err) else ""
    if not prefix and hint and hint[15:-2] in public_groups() and value:  # a misspelt group: group=choice
        hint = f"{hint[:-2]}={value}?)"
    return (
        f"unknown key {key}{hint}: no part of {program} reads it "
        f"(`{program} --cfg job` prints every key)"
    )


def _target_takes(target: str, key: str) -> bool:
    """Return True when the callable named by `target` takes the keyword `key` (or any keyword)."""
    from hydra.utils import get_object

    try:
        obj = get_object(target)
        params = inspect.signature(obj).parameters
    except (ImportError, ValueError, TypeError, AttributeError):
        return True  # a _target_ that cannot be inspected is instantiate's to judge
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    return key in params


def _data_keys() -> set[str]:
    """Return every top-level key of the data configs (msr/conf/data/*.yaml, `_loader` included)."""
    keys: set[str] = set()
    for file in (CONFIG_DIR / "data").glob("*.yaml"):
        keys.update(str(k) for k in OmegaConf.load(file) if k != "defaults")
    return keys


def _from_checkpoint(cfg: DictConfig) -> bool:
    """Return True when `cfg.data` is msr-eval/msr-predict's `data=checkpoint` (an open node)."""
    return isinstance(cfg.get("data"), DictConfig) and bool(cfg.data.get("from_checkpoint"))


def _is_read(cfg: DictConfig, key: str) -> bool:
    """Return True when some part of msr reads `key` (a dotted path that `+` added to `cfg`)."""
    parts = key.split(".")
    if parts[0] == "hydra" or parts[-1].startswith("_"):
        return True  # Hydra's own keys are Hydra's to check; `_target_`, `_convert_`... are instantiate's
    if parts[0] == "data" and len(parts) == 2 and _from_checkpoint(cfg):
        return parts[1] in _data_keys()  # msr-eval/msr-predict: keys replacing the checkpoint's data config
    for depth in range(len(parts) - 1, 0, -1):  # the nearest node on the path that names a _target_
        node = OmegaConf.select(cfg, ".".join(parts[:depth]), default=None)
        if isinstance(node, DictConfig) and isinstance(node.get("_target_"), str):
            return _target_takes(node._target_, parts[depth])
    return False


def added_keys(overrides: Iterable[str]) -> list[str]:
    """Return the keys of the `+key=value` overrides in `overrides` (not `++`, which may replace a key)."""
    keys = []
    for override in overrides:
        if override.startswith("+") and not override.startswith("++") and "=" in override:
            key = override[1:].split("=", 1)[0].strip()
            if "/" not in key and "@" not in key:  # `+group/option` and packages: Hydra's to check
                keys.append(key)
    return keys


def check_added_keys(cfg: DictConfig, overrides: Iterable[str], program: str) -> None:
    """Raise ConfigError for the first key added with `+` (in `overrides`) that nothing in msr reads."""
    groups = public_groups()
    for key in added_keys(overrides):
        if key in groups:  # `+group=choice`: a config group, Hydra checked it
            continue
        if _is_read(cfg, key):
            continue
        others = [k for k in key_paths(cfg) if k != key]
        if _from_checkpoint(cfg) and key.startswith("data."):
            others += [f"data.{k}" for k in _data_keys()]
        raise ConfigError(
            f"unknown key {key}{did_you_mean(key, others)}: no part of {program} reads it, so "
            f"+{key}=... would change nothing (`{program} --cfg job` prints every key)"
        )


def check_job_overrides(cfg: DictConfig, program: str) -> None:
    """Check the `+` overrides of the running Hydra job (see `check_added_keys`); return None if they pass."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    check_added_keys(cfg, HydraConfig.get().overrides.task, program)
