"""What the programs say when they fail: the one-line message of an error the user can fix (None for any
other error), and the exit statuses. How a program ends with it is msr.cli.entry's job."""

from __future__ import annotations

from msr.compat import instantiation_error
from msr.errors import UserError
from msr.files import NO_ROOM, no_room_message

#: Exit status of a run stopped by SIGTERM (128 + 15, as a shell reports a process killed by SIGTERM),
#: after its checkpoint is written: a scheduler tells a preempted run from a finished (0) or failed one.
EXIT_SIGTERM = 143
#: Exit status of a user error (bad path, file, key or value): one line on stderr says what to do.
EXIT_USER_ERROR = 2

#: Errors a user can cause: every msr error of that kind derives from UserError (msr.errors).
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)


def user_error_message(err: BaseException) -> str | None:
    """Return the one-line message of a user-caused error, or None for any other exception.

    User-caused: a UserError (or a missing file), an OSError on a named file, a config that cannot be built.
    """
    if isinstance(err, USER_ERRORS):
        return str(err)
    if isinstance(err, OSError) and err.filename:
        if err.errno in NO_ROOM:  # a full disk, quota or file-size limit met outside msr's own writers
            return no_room_message(err.filename, err)
        return f"cannot write or read {err.filename}: {err.strerror or type(err).__name__}"
    return config_error_message(err)


def config_error_message(err: BaseException) -> str | None:
    """Return a one-line message for a config that cannot be built (None when `err` is something else).

    Hydra wraps what a `_target_` raises in an InstantiationException: a user error inside is that error;
    an unknown `_target_` or keyword is the config's fault; a mandatory value left `???` names its key.
    """
    from hydra.errors import InstantiationException  # here: programs without Hydra never load it
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(err, MissingMandatoryValue):
        key = getattr(err, "full_key", None) or str(err).splitlines()[0]
        return f"missing value for {key}: give it on the command line ({key}=...)"
    if not isinstance(err, InstantiationException):
        return None
    cause = err.__cause__
    if cause is not None and (found := user_error_message(cause)) is not None:
        return found
    key, first, target_not_found = instantiation_error(err)
    where = f"config node {key}" if key else "the config"
    if cause is None or isinstance(cause, ImportError) or target_not_found:
        return f"{where}: {first}; check its _target_ (or the config group choice)"
    if isinstance(cause, TypeError) and "argument" in str(cause):
        return f"{where}: {cause}; check its keys"
    if _is_lightning_misconfiguration(cause):  # a value Lightning refuses (`+trainer.max_time=xyz`)
        return f"{where}: {' '.join(str(cause).split())}; check its values"
    return None


def _is_lightning_misconfiguration(err: BaseException) -> bool:
    """Return True for Lightning's MisconfigurationException (a value or key Lightning refuses)."""
    try:
        from lightning.fabric.utilities.exceptions import MisconfigurationException
    except ImportError:  # pragma: no cover - lightning is a dependency
        return False
    return isinstance(err, MisconfigurationException)


def hydra_override_message(text: str) -> str:
    """Return Hydra's message about a bad override or choice as one line.

    An override that adds (`+key=value`) a key the config has already gets msr's words; any other
    message has its lines joined with "; ".
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith(_APPEND_EXISTING) and (key := _quoted(lines[0])):
        value = _quoted(lines[1]).split("=", 1)[1] if len(lines) > 1 and "=" in _quoted(lines[1]) else "..."
        return (
            f"{key} is in the config already: set it without the '+' ({key}={value}), or use ++{key}={value}"
        )
    return "; ".join(line.rstrip(".") if i < len(lines) - 1 else line for i, line in enumerate(lines))


_APPEND_EXISTING = "Could not append to config. An item is already at"


def _quoted(line: str) -> str:
    """Return the first '...'-quoted part of `line` ('' when none)."""
    parts = line.split("'")
    return parts[1] if len(parts) >= 3 else ""


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
