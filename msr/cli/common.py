"""What the Hydra entry points share: the config folder (and its `msr.run` resolver), user errors, and
checks of config values before any work."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from msr.errors import UserError
from msr.layout import register_resolvers, run_dir

log = logging.getLogger(__name__)
register_resolvers()  # the configs name paths inside a run folder as ${msr.run:<name>}

__all__ = ["CONFIG_DIR", "check_config_values", "run_dir", "to_dict", "user_errors"]

#: The Hydra configs of the repository (absolute, so console scripts find them from any folder).
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")

#: Errors a user can cause; entry points turn them into one clear line and exit code 2. With
#: msr.models loaded, its WeightsError too (see `user_error_types`).
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)


def user_error_types() -> tuple[type[BaseException], ...]:
    """Return USER_ERRORS and, once msr.models is loaded (nothing raises it before), its WeightsError."""
    models = sys.modules.get("msr.models")
    weights_error = getattr(models, "WeightsError", None)
    return USER_ERRORS + ((weights_error,) if weights_error is not None else ())


@contextlib.contextmanager
def user_errors(program: str) -> Iterator[None]:
    """Turn a user-caused error into `program: error: message` on stderr and exit status 2.

    User errors: `user_error_types()`, an OSError on a named file (unwritable folder, full disk), a config
    node that cannot be built (see msr.cli.failures). The line also ends the run's log file (`train.log`);
    with HYDRA_FULL_ERROR=1 the traceback is printed before it. Any other exception is logged with its
    traceback to the log file and raised again (Hydra prints it).
    """
    from msr.cli import failures

    failures.restore_hydra_full_error()
    try:
        yield
    except Exception as err:  # SystemExit and KeyboardInterrupt pass through
        message = failures.user_error_message(err, user_error_types())
        if message is None:
            failures.log_to_files(f"{program}: stopped by an unexpected error", exc_info=err)
            raise
        failures.fail(program, message, err)


def check_config_values(
    cfg: DictConfig, whole_numbers: dict[str, int | None], ignore_missing: tuple[str, ...] = ()
) -> None:
    """Raise ConfigError, before any work, for a mandatory value left `???` (but `ignore_missing`, which
    the program fills in) or a key of `whole_numbers` that is not a whole number >= its least value
    (None: any; null values pass)."""
    from msr.errors import ConfigError

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


