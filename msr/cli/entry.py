"""The one way every msr program starts and ends (msr-train, msr-eval, msr-predict, msr-convert,
msr-aggregate): an error the user can fix is one `program: error: ...` line and exit status 2, a run's log
file ends with the error that stopped it, and SIGTERM is exit status 143 after the checkpoint is written.

- `run_entry(program, main)` runs a program's main function. For Hydra programs (`@hydra.main`), what fails
  before the job starts (a bad override, a run folder that cannot be created or written) becomes one line
  instead of Hydra's traceback; for the others, any user error does.
- `user_errors(program)` wraps a Hydra job: user errors become one line, also written to the run's log
  file; other exceptions are logged there with their traceback and raised again (Hydra prints them).
- `sigterm_exit(program)` wraps a training job: a run stopped by SIGTERM says how to resume it.
- HYDRA_FULL_ERROR=1 (set by the user) prints the tracebacks of user errors too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

from msr.cli.failures import (
    EXIT_SIGTERM,
    EXIT_USER_ERROR,
    hydra_override_message,
    start_up_error_message,
    user_error_message,
)
from msr.layout import run_dir

log = logging.getLogger(__name__)
Returned = TypeVar("Returned")

#: Whether `run_entry` set HYDRA_FULL_ERROR=1 itself (then the user did not).
_full_error = {"set_by_msr": False}


def run_entry(program: str, main: Callable[[], Returned]) -> Returned:
    """Run `main()` (a `@hydra.main` function or a plain one) as the program `program`; return what it
    returns, or exit with status 2 and one error line for what the user can fix.

    Hydra is asked to raise what fails before the job starts (HYDRA_FULL_ERROR=1 until the job starts,
    see `user_errors`), so that such errors are printed here as one line.
    """
    from msr.cli.help import GROUPS, help_text, wants_help

    if program in GROUPS and wants_help(sys.argv[1:]):  # msr's page, not Hydra's (that is --hydra-help)
        print(help_text(program))
        raise SystemExit(0)
    quiet_lightning_tips()
    # A log file that cannot be written (a full disk) must not print a traceback per record: the write
    # that fails for want of room is reported once, as one line, by the writer or the error it raises.
    logging.raiseExceptions = False
    asked = user_asked_full_error()
    if not asked:
        os.environ["HYDRA_FULL_ERROR"] = "1"
        _full_error["set_by_msr"] = True
    try:
        return main()
    except Exception as err:  # Hydra imported here only: msr-convert and msr-aggregate never load it
        from hydra.errors import CompactHydraException
        from omegaconf.errors import OmegaConfBaseException

        from msr.cli.typos import override_error_message

        typo = override_error_message(err, program) if not asked else None
        if typo is not None:  # a misspelt key, group or choice: one line with the closest names
            print(f"{program}: error: {typo}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None
        if isinstance(err, CompactHydraException) and not asked:  # a bad override or choice: Hydra's words
            cause = f"\n{err.__cause__}" if isinstance(err.__cause__, OmegaConfBaseException) else ""
            print(f"{program}: error: {hydra_override_message(f'{err}{cause}')}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None
        message = start_up_error_message(err) or user_error_message(err)
        if message is None or isinstance(err, CompactHydraException):
            raise
        fail(program, message, err)
    finally:
        restore_hydra_full_error()


@contextlib.contextmanager
def user_errors(program: str) -> Iterator[None]:
    """Within this block (a Hydra job), turn a user-caused error into `program: error: message` on stderr,
    the end of the run's log file (`train.log`), and exit status 2.

    User errors: see msr.cli.failures.user_error_message. With HYDRA_FULL_ERROR=1 the traceback is printed
    before the line. Any other exception is logged with its traceback to the log file and raised again.
    """
    restore_hydra_full_error()
    try:
        yield
    except Exception as err:  # SystemExit and KeyboardInterrupt pass through
        message = user_error_message(err)
        if message is None:
            log_to_files(f"{program}: stopped by an unexpected error", exc_info=err)
            raise
        fail(program, message, err)


@contextlib.contextmanager
def sigterm_exit(program: str) -> Iterator[None]:
    """Within this block, a run that Lightning stopped on SIGTERM (after writing its checkpoint, see
    msr.training.callbacks.interrupt) says so in one line and exits with status `EXIT_SIGTERM` (143),
    not 0; a run stopped by a first Ctrl-C (handled as SIGTERM) says Ctrl-C and exits with status 130."""
    try:
        yield
    except SystemExit as err:  # Lightning's SIGTERMException is one; imported only here (a light start)
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        from msr.training.callbacks import ctrl_c

        if not isinstance(err, SIGTERMException):
            raise
        cause, status = ("Ctrl-C", ctrl_c.EXIT_CTRL_C) if ctrl_c.pressed() else ("SIGTERM", EXIT_SIGTERM)
        line = (
            f"{program}: stopped by {cause} (exit status {status}); the training state is saved: "
            f"to resume, run the same command with ckpt_path=auto hydra.run.dir={run_dir()}"
        )
        print(line, file=sys.stderr)
        log_to_files(line, level=logging.WARNING)
        raise SystemExit(status) from None


def _not_a_tip(record: logging.LogRecord) -> bool:
    """Return False for Lightning's advertising tips ("💡 Tip: ..."), which say nothing about the run."""
    return not str(record.msg).lstrip().startswith("💡 Tip")


def quiet_lightning_tips() -> None:
    """Keep Lightning's tips out of the console and the log files (a filter on its rank-zero loggers)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _not_a_tip not in logger.filters:
            logger.addFilter(_not_a_tip)


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
