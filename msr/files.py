"""The one atomic file writer (and folder builder) and the one JSON reader of msr.

Writers go through `atomic_path`: the content goes to a temporary file in the destination folder,
is flushed to disk (fsync) and renamed onto the destination, so a reader sees either the old file or
the whole new one, and a failed write leaves the old file and no temporary file behind. A write that
fails for want of room (a full disk, a used-up quota, a file-size limit) raises `WriteFailed`, a user
error whose one line names the file and the cause, whatever library did the writing (torch's zip
writer hides the OSError inside a RuntimeError: `no_room_cause` finds it).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from msr.errors import UserError

PathLike = str | os.PathLike


def _current_umask() -> int:
    """Return the process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# files written through atomic_path get the permissions a plain open() would give them
_FILE_MODE = 0o666 & ~_current_umask()

#: The errno values of a write that failed for want of room, and what each means to the user.
NO_ROOM = {
    errno.ENOSPC: "no space left on the device",
    getattr(errno, "EDQUOT", errno.ENOSPC): "disk quota exceeded",
    errno.EFBIG: "file too large (over the file-size limit, `ulimit -f`, or the file system's largest file)",
}


class WriteFailed(UserError):
    """A file (or folder) could not be written for want of room; the message names it and the cause."""

    def __init__(self, path: PathLike, cause: OSError, kept: bool) -> None:
        # the disk is full: the log files cannot grow either, and logging would print a traceback for
        # every record it fails to write; it drops them quietly instead, so the error stays one line
        logging.raiseExceptions = False
        self.path = Path(path)
        self.cause = cause
        left = f"the earlier {self.path.name} is kept whole" if kept else "nothing half-written is left"
        super().__init__(no_room_message(self.path, cause, left))


def no_room_message(path: PathLike, cause: OSError, left: str | None = None) -> str:
    """Return the one line of a write of `path` that failed for want of room (`cause.errno` in NO_ROOM);
    `left`: what became of the file, said after the cause."""
    name = errno.errorcode.get(cause.errno or 0, str(cause.errno))
    what = f"; {left}" if left else ""
    return (
        f"cannot write {path}: {NO_ROOM[cause.errno]} ({name}){what}; free some space (or raise the quota or "
        f"the file-size limit) or write elsewhere, then run again"
    )


def no_room_cause(err: BaseException) -> OSError | None:
    """Return the OSError of a full disk, a used-up quota or a file-size limit behind `err` (`err` itself
    or one in its `__cause__`/`__context__` chain), or None when `err` has another cause."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in NO_ROOM:
            return current
        seen.add(id(current))
        hidden = current.__suppress_context__  # `raise ... from None`
        current = current.__cause__ if current.__cause__ is not None or hidden else current.__context__
    return None


def no_room(err: BaseException, path: PathLike, kept: bool) -> WriteFailed | None:
    """Return the `WriteFailed` for writing `path` when `err` comes from a lack of room (else None);
    `kept`: whether the earlier version of `path` is still whole."""
    if isinstance(err, WriteFailed):
        return err
    cause = no_room_cause(err)
    return WriteFailed(path, cause, kept) if cause is not None else None


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path in `path`'s folder (parents created); on success it replaces `path`.

    Write the content to the yielded path. When the block ends normally the file is fsync'ed and
    renamed onto `path` (`os.replace`, atomic on POSIX); on any error, KeyboardInterrupt included,
    the temporary file is removed and `path` is left as it was. An error caused by a full disk, a quota
    or a file-size limit (ENOSPC, EDQUOT, EFBIG; also when a library wrapped it) becomes `WriteFailed`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        failed = no_room(err, path, kept=path.exists())
        if failed is None:
            raise
        raise failed from err
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, _FILE_MODE)
        yield tmp
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        failed = no_room(err, path, kept=path.exists())
        if failed is None or failed is err:
            raise
        raise failed from err


def build_folder_once(
    root: PathLike, is_complete: Callable[[Path], bool], write: Callable[[Path], Any]
) -> Path:
    """Return `root`, first filled by `write(folder)` unless `is_complete(root)` already holds.

    `write` fills a temporary sibling folder, which is then renamed to `root`, so an interrupted run
    never leaves a half-written folder, and concurrent processes (DDP ranks) end up sharing one
    complete copy: when another process's rename came first, this one's copy is dropped. A full disk,
    quota or file-size limit raises `WriteFailed` naming `root`.
    """
    root = Path(root)
    if is_complete(root):
        return root
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
        try:
            write(tmp)
            try:
                os.rename(tmp, root)
            except OSError:
                if not is_complete(root):  # not a concurrent writer that finished first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception as err:
        failed = no_room(err, root, kept=False)
        if failed is None or failed is err:
            raise
        raise failed from err
    return root


def write_text_atomic(text: str, path: PathLike) -> Path:
    """Write `text` (UTF-8) to `path` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(obj: Any, path: PathLike, *, indent: int | None = None) -> Path:
    """Write `obj` as strict JSON to `path` atomically (`json.dump` with `indent`); return the path.

    JSON has no NaN or infinity: such floats (a metric without a value) are written as `null`, which
    readers take as a missing value, so that every JSON parser reads the file."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        json.dump(finite_or_null(obj), f, indent=indent, allow_nan=False)
    return Path(path)


def finite_or_null(obj: Any) -> Any:
    """Return `obj` with every NaN or infinite float inside dicts, lists and tuples replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: finite_or_null(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(value) for value in obj]
    return obj


def write_csv_atomic(columns: Sequence[str], rows: Sequence[Sequence[Any]], path: PathLike) -> Path:
    """Write a CSV table (header `columns`, then `rows`) to `path` atomically; return the path."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    return Path(path)


def read_json(path: PathLike, what: str = "JSON file", error: type[Exception] = UserError) -> Any:
    """Return the parsed content of the JSON file at `path`.

    Raises `error` with a message naming `what` and the path when the file is missing, is a folder,
    is not UTF-8 (UTF-16/32 with a BOM are accepted, as `json.loads` accepts them) or is not valid
    JSON (with the line and column of the first fault).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{what} is a directory, not a JSON file: {path}") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e}") from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        where = f"line {e.lineno}, column {e.colno}"
        raise error(f"{what} {path} is not valid JSON: {e.msg} at {where}") from None
    except UnicodeDecodeError as e:
        raise error(f"{what} {path} is not UTF-8 text: {e}") from None
