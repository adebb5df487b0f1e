"""checkpoints/best.ckpt without a false alarm: a run that has not been evaluated yet (a short run, or
one without validation) writes no best checkpoint and says nothing, where Lightning's ModelCheckpoint
warns that the monitored key was never logged."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint


class BestModelCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that saves only once its `monitor` key has been logged (after an evaluation)."""

    def _monitored(self, trainer: pl.Trainer) -> bool:
        """Return True when there is a value of `monitor` to rank the checkpoint by (or no monitor)."""
        return self.monitor is None or self.monitor in trainer.callback_metrics

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """Save as ModelCheckpoint does, once the monitored key exists."""
        if self._monitored(trainer):
            super().on_train_batch_end(trainer, pl_module, *args)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save as ModelCheckpoint does, once the monitored key exists."""
        if self._monitored(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save as ModelCheckpoint does, once the monitored key exists."""
        if self._monitored(trainer):
            super().on_validation_end(trainer, pl_module)
