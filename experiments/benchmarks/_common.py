"""What the COCO-scale benchmarks share: memory figures read from /proc (Linux), a process's RSS and USS
and their peak, and writing the figures as JSON."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import threading
from pathlib import Path
from typing import Any

MB = 1 << 20


def memory(pid: int | None = None) -> dict[str, float]:
    """Return {"rss_mb", "uss_mb"} of process `pid` (default: this one) from /proc/<pid>/smaps_rollup.

    USS (unique set size) counts the pages only this process maps: Private_Clean + Private_Dirty.
    """
    fields = {}
    with open(f"/proc/{pid or os.getpid()}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss_mb": fields.get("Rss", 0) / MB, "uss_mb": uss / MB}


def release_freed_memory() -> None:
    """Collect garbage and hand the heap's freed pages back to the system (glibc's malloc_trim), so that
    the RSS before a measured step is not inflated by what an earlier step freed."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to hand back
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRSS:
    """A context manager measuring this process's peak RSS within the block (`peak_mb`).

    The kernel's own high-water mark (VmHWM) is reset on entry (`/proc/self/clear_refs`, Linux >= 4.0)
    and read on exit, so nothing samples while the block runs; where the reset is not permitted, a
    thread samples the RSS every `interval` s instead.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, memory()["rss_mb"])
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakRSS:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            with open("/proc/self/status") as f:
                hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
            self.peak_mb = hwm * 1024 / MB
        self.peak_mb = max(self.peak_mb, memory()["rss_mb"])


def write_figures(path: Path | None, figures: Any) -> None:
    """Write `figures` as indented JSON to `path` (folders created); nothing when `path` is None."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2))
