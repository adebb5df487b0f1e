"""A checkpoint of the training state when a run is told to stop (SIGTERM: preemption, scancel, requeue)."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class InterruptCheckpoint(pl.Callback):
    """On SIGTERM, write the full training state to `path` (by default the run's checkpoints/last.ckpt).

    Lightning turns SIGTERM into a SIGTERMException at the next step boundary on every rank and calls
    the callbacks' `on_exception`; this one saves the checkpoint there (atomically, like every Lightning
    checkpoint), so `ckpt_path=auto` (or `last`) resumes from the step where the run was stopped.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.path)
        log.warning("SIGTERM at global step %d: checkpoint written to %s", trainer.global_step, self.path)
