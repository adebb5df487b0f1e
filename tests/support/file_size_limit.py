"""A file-size limit for the processes of the write-failure tests: a write that would make a file larger
than the limit fails with EFBIG ("File too large"), as a full disk fails with ENOSPC.

- `limit_file_size(limit)` sets it for the calling process (SIGXFSZ ignored, so that the write fails
  instead of the signal killing the process);
- `FileSizeLimit` is a Hydra callback that sets it when the job starts, after Hydra has written its own
  files (`.hydra/*.yaml`, the log file):
  `overrides(N)` gives its Hydra overrides (tests/ on PYTHONPATH: support.env.subprocess_env).
"""

from __future__ import annotations

import resource
import signal
from typing import Any

from hydra.experimental.callback import Callback


def limit_file_size(limit: int) -> None:
    """Let no file of this process grow beyond `limit` bytes (writes beyond fail with EFBIG); return None."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), hard))


class FileSizeLimit(Callback):
    """Hydra callback: the job's files may not grow beyond `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        limit_file_size(self.limit)


def overrides(limit: int) -> list[str]:
    """Return the Hydra overrides that install `FileSizeLimit(limit)` for a job."""
    return [
        "+hydra.callbacks.size_limit._target_=support.file_size_limit.FileSizeLimit",
        f"+hydra.callbacks.size_limit.limit={int(limit)}",
    ]
