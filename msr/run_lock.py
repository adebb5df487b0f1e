"""One run per folder: a run holds its folder for as long as it runs.

- `hold_folder(folder, program)` (msr-train, msr-eval, msr-predict) takes an exclusive `fcntl.flock` on
  `<folder>/.msr_run.lock` and writes who holds it there (program, process id, host, start, command). A
  second run in the same folder stops with `FolderInUse`, one line naming the folder and the running
  process. The operating system releases the lock when its process ends, however it ends: a run killed
  with SIGKILL leaves no stuck lock (the file stays, with the last holder's details; they are read only
  while some process holds the lock).
- `hold_run_folder(folder, resuming=..., overwrite=...)` (msr-train) also refuses a new run in a folder
  that holds an earlier run's checkpoints (`FolderHoldsRun`) unless it resumes that run (`ckpt_path=auto`
  or `last`, see `is_resuming`) or is told to start over (`overwrite=true`, which first deletes the
  earlier run's checkpoints, metrics, evaluations and figures, `EARLIER_RUN`).

Only the process that writes the run's files takes part: on a rank other than 0 of a DDP world (Lightning's
relaunched processes, torchrun, srun) and on the first process of any node but the first, both do nothing.
A file system without flock (some NFS or Lustre mounts) gets a warning and no lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from msr.distributed import get_rank
from msr.errors import UserError
from msr.layout import RUN_OUTPUTS, RUN_PATHS, RunLayout

log = logging.getLogger(__name__)

#: The lock file inside a run folder.
LOCK_FILE = RUN_PATHS["lock"]
#: The config key that tells msr-train to start over in a folder holding an earlier run.
OVERWRITE_KEY = "overwrite"
#: What an earlier run left in its folder that a new run would mix with its own (deleted by overwrite=true).
EARLIER_RUN = tuple(RUN_PATHS[name] for name in RUN_OUTPUTS)
#: Longest command quoted in the message of a folder in use.
_MAX_COMMAND = 200


class FolderInUse(UserError):
    """Another process holds the run folder; the message names the folder and that process."""


class FolderHoldsRun(UserError):
    """The run folder holds an earlier run's checkpoints and this run neither resumes nor overwrites it."""


def writes_run_files() -> bool:
    """Return True for the process that writes the run's files: global rank 0.

    Before a process group exists the rank comes from the launcher's variables (`msr.distributed.get_rank`);
    Lightning's own multi-node launch starts the first process of every node without a global rank, so a
    node rank (NODE_RANK, GROUP_RANK) other than 0 also says no.
    """
    if get_rank() != 0:
        return False
    if "RANK" in os.environ:  # a global rank (torchrun): already decisive
        return True
    return all(os.environ.get(key, "0") in ("", "0") for key in ("NODE_RANK", "GROUP_RANK"))


def is_resuming(ckpt_path: str | None, folder: str | os.PathLike) -> bool:
    """Return True when `ckpt_path` resumes the run of `folder`: "auto", "last", or a checkpoint inside
    `folder`/checkpoints."""
    if ckpt_path in ("auto", "last"):
        return True
    if not ckpt_path or ckpt_path == "null":
        return False
    checkpoints = RunLayout(folder).checkpoints.resolve()
    return Path(ckpt_path).expanduser().resolve().parent == checkpoints


def _holder(program: str) -> dict[str, object]:
    """Return who holds a folder: this process's program, id, host, start time and command line."""
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else program
    return {
        "program": program,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": command,
    }


def _in_use_message(folder: Path, lock: Path) -> str:
    """Return the one line that names `folder` and the process holding it (as its lock file tells)."""
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
        if not isinstance(holder, dict):
            raise ValueError("not a holder record")
    except (OSError, ValueError):
        holder = {}
    command = str(holder.get("command", ""))
    if len(command) > _MAX_COMMAND:
        command = command[: _MAX_COMMAND - 3] + "..."
    who = (
        f"{holder.get('program', 'a run')} (process {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"started {holder.get('started', '?')}: {command})"
        if holder
        else "another process"
    )
    return (
        f"the run folder {folder} is in use by {who}; wait until it ends, or give this run its own folder "
        f"with hydra.run.dir=<folder>"
    )


@contextlib.contextmanager
def hold_folder(folder: str | os.PathLike, program: str) -> Iterator[None]:
    """Hold `folder` (created if needed) for the duration of the block; yield None.

    Raises FolderInUse when another process holds it. Does nothing on processes that do not write the
    run's files (`writes_run_files`).
    """
    if not writes_run_files():
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by programs this one starts
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderInUse(_in_use_message(folder, lock)) from None
            log.warning("cannot lock the run folder %s (%s): a second run in it goes unnoticed", folder, err)
            locked = False
        if locked:
            record = json.dumps(_holder(program)).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        try:
            yield
        finally:
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def earlier_checkpoints(folder: str | os.PathLike) -> list[str]:
    """Return the names of the checkpoints an earlier run left in `folder`/checkpoints (sorted)."""
    checkpoints = RunLayout(folder).checkpoints
    if not checkpoints.is_dir():
        return []
    return sorted(p.name for p in checkpoints.glob("*.ckpt") if not p.name.startswith("."))


def remove_earlier_run(folder: str | os.PathLike) -> list[str]:
    """Delete what an earlier run left in `folder` (`EARLIER_RUN`); return the names deleted."""
    removed = []
    for name in EARLIER_RUN:
        path = Path(folder) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(f"{name}/")
        elif path.exists() or path.is_symlink():
            path.unlink()
            removed.append(name)
    return removed


@contextlib.contextmanager
def hold_run_folder(
    folder: str | os.PathLike, *, resuming: bool, overwrite: bool, program: str = "msr-train"
) -> Iterator[None]:
    """Hold the training run folder `folder` (see `hold_folder`) for the duration of the block; yield None.

    A run that does not resume (`resuming`, see `is_resuming`) in a folder holding an earlier run's
    checkpoints raises FolderHoldsRun, unless `overwrite`: then the earlier run's files (`EARLIER_RUN`)
    are deleted first. Raises FolderInUse when another process holds the folder.
    """
    with hold_folder(folder, program):
        if writes_run_files() and not resuming:
            found = earlier_checkpoints(folder)
            if found and not overwrite:
                names = ", ".join(f"checkpoints/{name}" for name in found)
                raise FolderHoldsRun(
                    f"the run folder {folder} holds the checkpoints of an earlier run ({names}); resume that "
                    f"run with ckpt_path=auto, start over in its folder with {OVERWRITE_KEY}=true (its "
                    f"checkpoints, metrics, evaluations and figures are deleted), or give this run its own "
                    f"folder with hydra.run.dir=<folder>"
                )
            if overwrite:
                removed = remove_earlier_run(folder)
                if removed:
                    deleted = ", ".join(removed)
                    log.warning("%s=true: deleted the earlier run's %s in %s", OVERWRITE_KEY, deleted, folder)
        yield
