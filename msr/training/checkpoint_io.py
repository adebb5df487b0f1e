"""Checkpoints written atomically in their own folder: a crash or `kill -9` never leaves a half-written one.

Lightning's own writer goes through an fsspec transaction whose temporary file lies in the system temp
folder: a `kill -9` leaves it there, and the final move is only atomic when that folder is on the same
filesystem as the run. `AtomicCheckpointIO` writes through `msr.files.atomic_path` instead: a temporary
file beside the checkpoint, fsync'ed, then renamed onto it. A reader (a resume, msr-eval) sees the old
checkpoint or the whole new one; temporaries that a killed process left behind are removed by the next
successful write of the same checkpoint. A checkpoint that cannot be written for want of room (a full
disk, a quota, a file-size limit) ends in `msr.files.WriteFailed`, one line naming the file and the cause,
instead of the RuntimeError of torch's zip writer (`unexpected pos ...`), and the earlier one stays whole.

`AtomicCheckpointIO.written` is called between writing the temporary file and renaming it: a subclass may
observe the write there (tests hold it to kill a process in the middle of a checkpoint write).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from msr.files import atomic_path


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Return the temporary files that interrupted atomic writes of `path` left beside it (a name holding
    glob characters, such as `epoch[1].ckpt`, matches its own temporaries only)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's `TorchCheckpointIO`, writing atomically in the checkpoint's own folder."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """Write `checkpoint` to `path` with `torch.save` through a temporary file beside it; return None.

        torch writes through a Python file object, so that the OSError of a full disk stays in the chain
        of torch's RuntimeError, where `atomic_path` finds it (`msr.files.no_room_cause`).
        """
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        leftovers = stale_temporaries(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
            self.written(Path(tmp))
        for stale in leftovers:
            stale.unlink(missing_ok=True)

    def written(self, temporary: Path) -> None:
        """Called once the checkpoint's temporary file `temporary` is complete, before it is renamed onto
        the checkpoint; does nothing here. Returns None."""
