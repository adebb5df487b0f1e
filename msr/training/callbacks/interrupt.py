"""A checkpoint of the training state when a run is told to stop (SIGTERM: preemption, scancel, requeue;
Ctrl-C, see msr.training.callbacks.ctrl_c) or stops on an error, so that the training done so far is
never lost."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from msr.compat import training_state
from msr.training.callbacks import ctrl_c

log = logging.getLogger(__name__)


class InterruptCheckpoint(pl.Callback):
    """Writes the full training state to `path` (by default the run's checkpoints/last.ckpt) when training
    stops early, so that `ckpt_path=auto` (or `last`) resumes from there.

    - Ctrl-C while fitting: the first one is handled as SIGTERM (below), a second one stops at once.
    - SIGTERM: Lightning turns it into a SIGTERMException at the next step boundary on every rank and calls
      the callbacks' `on_exception`; every rank takes part in the save.
    - any other exception while fitting (with `on_error`, after at least one optimizer step): an error in
      validation, a picture that cannot be read, a NaN loss... Only the failing process runs this, so the
      state is written by rank 0 without waiting for the others; if the error left nothing that can be
      saved, the earlier checkpoint stays.

    Writes go through the trainer's CheckpointIO (msr: atomic, see msr.training.checkpoint_io).
    """

    def __init__(self, path: str | Path, on_error: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self.on_error = bool(on_error)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Route Ctrl-C through msr.training.callbacks.ctrl_c while fitting."""
        ctrl_c.install()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Give Ctrl-C back its usual behaviour."""
        ctrl_c.uninstall()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Give Ctrl-C back its usual behaviour (also after a stop)."""
        ctrl_c.uninstall()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Write the training state to `path` when training stops on SIGTERM or on an error."""
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)
            cause = "Ctrl-C" if ctrl_c.pressed() else "SIGTERM"
            step = trainer.global_step
            log.warning("%s at global step %d: checkpoint written to %s", cause, step, self.path)
            return
        if not self.on_error or trainer.global_step == 0 or isinstance(exception, KeyboardInterrupt):
            return
        try:  # no trainer.save_checkpoint: its barrier would wait for ranks that did not fail
            checkpoint = training_state(trainer)
            trainer.strategy.save_checkpoint(checkpoint, self.path)
        except Exception as err:  # the state the error left cannot be saved: keep the earlier checkpoint
            log.warning("could not save the training state after the error (%s)", err)
            return
        if trainer.is_global_zero:
            log.warning(
                "stopped by an error at global step %d: the training so far is saved in %s "
                "(resume with ckpt_path=auto once the cause is fixed)",
                trainer.global_step,
                self.path,
            )
