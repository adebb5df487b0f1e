"""Resuming exactly: a run resumed from any checkpoint reaches the steps, epochs and schedule of an
uninterrupted run, and the loggers' history stays whole.

Lightning restores a checkpoint written at the end of a training epoch (`on_train_epoch_end`, where
msr's `last.ckpt` is saved) differently depending on `max_steps`: with `max_steps=-1` it starts the next
epoch, but with `max_steps` set (Lightning then treats training as "iteration based") it replays the
epoch end and counts that epoch a second time, so a run capped by `max_epochs` trains one epoch less
(`schedule.max_steps=300 schedule.max_epochs=3`: 4 of 6 steps). `ExactResume` rewrites such a
checkpoint's loop state, as it is loaded, into the state Lightning has when the next epoch starts,
which both code paths restore the same way.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl

from msr.compat import (
    as_next_epoch_start,
    fit_loop_state,
    saved_at_epoch_end,
    saved_logging_step,
    set_logging_step,
)

log = logging.getLogger(__name__)

class ExactResume(pl.Callback):
    """Makes `trainer.fit(ckpt_path=...)` continue exactly where the checkpoint left off.

    On loading a checkpoint: an epoch-end loop state is rewritten as the start of the next epoch (see
    the module docstring), and every logger with a `rewind(step)` method (msr's resumable CSV logger)
    forgets the rows it holds beyond the checkpoint's global step, which the resumed run logs again.
    Put it first among the callbacks: at the first batch after such a resume it puts back the loggers'
    step counter, which Lightning's restart advanced once without training a batch, before other
    callbacks (the learning-rate monitor) log with it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._logging_step: int | None = None  # the loggers' step counter to put back at the first batch

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Rewrite an epoch-end loop state as the next epoch's start, and rewind the loggers."""
        fit_loop = fit_loop_state(checkpoint)
        if fit_loop is not None and saved_at_epoch_end(fit_loop):
            as_next_epoch_start(fit_loop)
            self._logging_step = saved_logging_step(fit_loop)
            log.debug("resuming at the epoch after global step %s", checkpoint.get("global_step"))
        step = int(checkpoint.get("global_step", 0))
        for logger in trainer.loggers:
            rewind = getattr(logger, "rewind", None)
            if callable(rewind):
                rewind(step)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """At the first batch after an epoch-end resume, put back the loggers' step counter."""
        if self._logging_step is not None:
            set_logging_step(trainer, self._logging_step)
            self._logging_step = None
