"""A checkpoint writer that holds every write for a second between its temporary file and the rename, so
that a test can kill the process in the middle of a checkpoint write."""

from __future__ import annotations

import time
from pathlib import Path

from msr.training.checkpoint_io import AtomicCheckpointIO

#: msr-train overrides that write checkpoints with SlowCheckpointIO (tests/ on PYTHONPATH).
SLOW_CHECKPOINTS = ["trainer.plugins=[{_target_:support.slow_checkpoints.SlowCheckpointIO}]"]


class SlowCheckpointIO(AtomicCheckpointIO):
    """msr's atomic checkpoint writer, waiting 1 s once the temporary file is written."""

    def written(self, temporary: Path) -> None:
        """Wait a second before the rename; return None."""
        time.sleep(1.0)
