"""Ctrl-C while training: the first one stops the run as SIGTERM does (at the next step boundary, after
writing checkpoints/last.ckpt atomically), the second one stops the process at once, without saving.

A terminal sends Ctrl-C (SIGINT) to every process of the foreground group, the DataLoader workers too: the
handler is inherited by the workers that are forked while it is installed, and ignores the signal there
(the main process stops them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

#: Exit status of a run stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_CTRL_C = 130

_state: dict[str, Any] = {"pid": None, "presses": 0, "previous": None}


def pressed() -> bool:
    """Return True when Ctrl-C asked this process to stop (the run then stops as on SIGTERM)."""
    return _state["presses"] > 0 and _state["pid"] == os.getpid()


def _on_ctrl_c(signum: int, frame: FrameType | None) -> None:
    """Handle SIGINT: ignored in forked workers; first: stop as on SIGTERM; second: exit at once."""
    if os.getpid() != _state["pid"]:
        return  # a DataLoader worker: the main process decides
    _state["presses"] += 1
    if _state["presses"] == 1:
        log.warning(
            "Ctrl-C: stopping after this step and writing checkpoints/last.ckpt "
            "(press Ctrl-C again to stop at once, without saving)"
        )
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's SIGTERM path: a step boundary, then the checkpoint
        return
    log.warning("second Ctrl-C: stopped at once, without saving the training since the last checkpoint")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(EXIT_CTRL_C)


def install() -> bool:
    """Route Ctrl-C through `_on_ctrl_c` (main thread only); return True when installed."""
    try:
        previous = signal.signal(signal.SIGINT, _on_ctrl_c)
    except ValueError:  # not the main thread: Ctrl-C keeps Python's behaviour
        return False
    if previous is not _on_ctrl_c:
        _state["previous"] = previous
    _state.update(pid=os.getpid(), presses=0)
    return True


def uninstall() -> None:
    """Give SIGINT back its handler of before `install` (the count of presses stays readable)."""
    if _state["pid"] != os.getpid() or signal.getsignal(signal.SIGINT) is not _on_ctrl_c:
        return
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, _state["previous"] or signal.default_int_handler)
