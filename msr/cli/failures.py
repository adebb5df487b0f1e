"""How the entry points fail: one line that says what is wrong and what to do, exit status 2 for what the
user can fix, and the run's log file ending with the error that stopped the run.

- `run_entry` wraps a `@hydra.main` function: what fails before the job starts (a bad override, a run
  folder that cannot be created or written) becomes one line instead of Hydra's traceback;
- `msr.cli.common.user_errors` wraps the job: user errors (see `user_error_message`) become one line;
  other exceptions are logged, with their traceback, to the run's log file and raised again;
- HYDRA_FULL_ERROR=1 (set by the user) prints the tracebacks of user errors too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any, NoReturn

from hydra.errors import CompactHydraException, InstantiationException
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from msr.files import NO_ROOM, no_room_message

log = logging.getLogger(__name__)

#: Exit status of a run stopped by SIGTERM (128 + 15, as a shell reports a process killed by SIGTERM),
#: after its checkpoint is written: a scheduler tells a preempted run from a finished (0) or failed one.
EXIT_SIGTERM = 143
#: Exit status of a user error (bad path, file, key or value): one line on stderr says what to do.
EXIT_USER_ERROR = 2

#: Whether `run_entry` set HYDRA_FULL_ERROR=1 itself (then the user did not).
_full_error = {"set_by_msr": False}


def user_error_message(err: BaseException, user_errors: tuple[type[BaseException], ...]) -> str | None:
    """Return the one-line message of a user-caused error, or None for any other exception.

    User-caused: an instance of `user_errors`, an OSError on a named file, a config that cannot be built.
    """
    if isinstance(err, user_errors):
        return str(err)
    if isinstance(err, OSError) and err.filename:
        if err.errno in NO_ROOM:  # a full disk, quota or file-size limit met outside msr's own writers
            return no_room_message(err.filename, err)
        return f"cannot write or read {err.filename}: {err.strerror or type(err).__name__}"
    return config_error_message(err, user_errors)


def config_error_message(err: BaseException, user_errors: tuple[type[BaseException], ...]) -> str | None:
    """Return a one-line message for a config that cannot be built (None when `err` is something else).

    Hydra wraps what a `_target_` raises in an InstantiationException: a user error inside is that error;
    an unknown `_target_` or keyword is the config's fault; a mandatory value left `???` names its key.
    """
    if isinstance(err, MissingMandatoryValue):
        key = getattr(err, "full_key", None) or str(err).splitlines()[0]
        return f"missing value for {key}: give it on the command line ({key}=...)"
    if not isinstance(err, InstantiationException):
        return None
    cause = err.__cause__
    if cause is not None and (found := user_error_message(cause, user_errors)) is not None:
        return found
    lines = str(err).splitlines()
    key = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")), "")
    where = f"config node {key}" if key else "the config"
    first = lines[0].split(", set env var HYDRA_FULL_ERROR")[0] if lines else type(err).__name__
    if cause is None or isinstance(cause, ImportError) or "Error locating target" in first:
        return f"{where}: {first}; check its _target_ (or the config group choice)"
    if isinstance(cause, TypeError) and "argument" in str(cause):
        return f"{where}: {cause}; check its keys"
    return None


def fail(program: str, message: str, err: BaseException | None = None) -> NoReturn:
    """Print `program: error: message` on stderr (after the traceback of `err` with HYDRA_FULL_ERROR=1),
    end the run's log file with the same line, and exit with status 2."""
    line = f"{program}: error: {message}"
    if err is not None and user_asked_full_error():
        traceback.print_exception(err)
    print(line, file=sys.stderr)
    log_to_files(line)
    raise SystemExit(EXIT_USER_ERROR) from None


def log_to_files(message: str, exc_info: BaseException | None = None, level: int = logging.ERROR) -> None:
    """Write `message` (with the traceback of `exc_info`) to the log files of the root logger only (the
    run's train.log), not to the console; return None."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    info = (type(exc_info), exc_info, exc_info.__traceback__) if exc_info is not None else None
    record = log.makeRecord(log.name, level, __file__, 0, message, None, info)
    saved, logging.raiseExceptions = logging.raiseExceptions, False  # a full disk: no logging traceback
    try:
        for handler in handlers:
            handler.handle(record)
    finally:
        logging.raiseExceptions = saved


def user_asked_full_error() -> bool:
    """Return True when the user set HYDRA_FULL_ERROR=1 (full tracebacks)."""
    return not _full_error["set_by_msr"] and os.environ.get("HYDRA_FULL_ERROR") == "1"


def restore_hydra_full_error() -> None:
    """Take back the HYDRA_FULL_ERROR=1 that `run_entry` set: the job's own unexpected errors are Hydra's
    to print, and processes the job starts (DDP) do not inherit it."""
    if _full_error["set_by_msr"]:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        _full_error["set_by_msr"] = False


@contextlib.contextmanager
def sigterm_exit(program: str) -> Iterator[None]:
    """Within this block, a run that Lightning stopped on SIGTERM (after writing its checkpoint, see
    msr.training.callbacks.interrupt) says so in one line and exits with status `EXIT_SIGTERM` (143),
    not 0."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from msr.cli.common import run_dir

    try:
        yield
    except SIGTERMException:
        line = (
            f"{program}: stopped by SIGTERM (exit status {EXIT_SIGTERM}); the training state is saved: "
            f"to resume, run the same command with ckpt_path=auto hydra.run.dir={run_dir()}"
        )
        print(line, file=sys.stderr)
        log_to_files(line, level=logging.WARNING)
        raise SystemExit(EXIT_SIGTERM) from None


def run_entry(program: str, hydra_main: Any) -> Any:
    """Run a `@hydra.main` function `hydra_main`; return what it returns.

    What fails before the job starts (composing the config, creating the run folder, opening its log
    file) ends in one `program: error: ...` line and exit status 2 instead of a traceback: Hydra is asked
    to raise such errors (HYDRA_FULL_ERROR=1 until the job starts) and they are printed here.
    """
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return hydra_main()
    os.environ["HYDRA_FULL_ERROR"] = "1"
    _full_error["set_by_msr"] = True
    try:
        return hydra_main()
    except CompactHydraException as err:  # a bad override or config choice: Hydra's own message
        cause = f"\n{err.__cause__}" if isinstance(err.__cause__, OmegaConfBaseException) else ""
        print(f"{program}: error: {err}{cause}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except Exception as err:
        message = start_up_error_message(err)
        if message is None:
            raise
        print(f"{program}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    finally:
        restore_hydra_full_error()


def start_up_error_message(err: BaseException) -> str | None:
    """Return the one-line message of an error met before the job starts (None: not the user's doing)."""
    cause = err.__cause__ if isinstance(err, ValueError) and isinstance(err.__cause__, OSError) else err
    if isinstance(cause, OSError) and cause.errno in NO_ROOM:  # Hydra's files: a full disk, not a bad folder
        return no_room_message(cause.filename or "the run folder", cause)
    if isinstance(cause, OSError):  # the run folder or its log file cannot be written
        where = cause.filename or "the run folder"
        return (
            f"cannot write the run folder ({where}: {cause.strerror or type(cause).__name__}); "
            f"choose a writable one with hydra.run.dir=<folder>"
        )
    return None
