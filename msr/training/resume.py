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
from collections.abc import MutableMapping
from typing import Any

import lightning.pytorch as pl

log = logging.getLogger(__name__)

_ZERO_PROGRESS = ("ready", "started", "processed", "completed")


def saved_at_epoch_end(fit_loop: MutableMapping[str, Any]) -> bool:
    """Return True when a checkpoint's fit-loop state was saved at the end of a training epoch
    (the epoch is processed but not yet completed) after its last batch."""
    total = fit_loop.get("epoch_progress", {}).get("total", {})
    batches = fit_loop.get("epoch_loop.batch_progress", {})
    started = total.get("started", 0)
    return (
        started > 0
        and total.get("ready") == started == total.get("processed")
        and total.get("completed") == started - 1
        and bool(batches.get("is_last_batch"))
    )


def as_next_epoch_start(fit_loop: MutableMapping[str, Any]) -> None:
    """Rewrite, in place, an epoch-end fit-loop state into the state at the start of the next epoch:
    the epoch completed, and the per-epoch counters of batches, scheduler and optimizer steps at 0."""
    epochs = fit_loop["epoch_progress"]
    for part in ("total", "current"):
        epochs[part]["completed"] = epochs[part]["processed"]
    batches = fit_loop["epoch_loop.batch_progress"]
    batches["current"] = {key: 0 for key in batches["current"]}
    batches["is_last_batch"] = False
    scheduler = fit_loop.get("epoch_loop.scheduler_progress")
    if scheduler:
        scheduler["current"] = {key: 0 for key in scheduler["current"]}
    optim = fit_loop.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {})
    for progress in optim.values():
        progress["current"] = {key: 0 for key in progress["current"]}
    val_batches = fit_loop.get("epoch_loop.val_loop.batch_progress")
    if val_batches:  # counts the validations of the epoch: none yet
        val_batches["total"] = {key: 0 for key in val_batches["total"]}


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
        fit_loop = checkpoint.get("loops", {}).get("fit_loop")
        if isinstance(fit_loop, MutableMapping) and saved_at_epoch_end(fit_loop):
            as_next_epoch_start(fit_loop)
            self._logging_step = fit_loop.get("epoch_loop.state_dict", {}).get("_batches_that_stepped")
            log.debug("resuming at the start of epoch %d", fit_loop["epoch_progress"]["total"]["completed"])
        step = int(checkpoint.get("global_step", 0))
        for logger in trainer.loggers:
            rewind = getattr(logger, "rewind", None)
            if callable(rewind):
                rewind(step)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """At the first batch after an epoch-end resume, put back the loggers' step counter."""
        if self._logging_step is not None:
            trainer.fit_loop.epoch_loop._batches_that_stepped = int(self._logging_step)
            self._logging_step = None
