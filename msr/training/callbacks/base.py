"""How an evaluation reaches the callbacks: the `Evaluation` record and the `EvaluationCallback` hook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl

if TYPE_CHECKING:
    from msr.evaluation.scoring import EvaluationResult


@dataclass(frozen=True)
class Evaluation:
    """One finished evaluation: the split, when it ran and what it found."""

    split: str  # "val" or "test"
    epoch: int
    global_step: int
    result: EvaluationResult  # metrics on every rank; results and calibration data on rank 0
    ground_truth: str | None = None  # the annotation file evaluated against
    variant: int = 0  # which job of a shared head pass it belongs to (msr.studies.head_module)
    loggers: tuple[Any, ...] | None = None  # where its pictures are logged (None: the trainer's loggers)


class EvaluationCallback(pl.Callback):
    """A callback that the LightningModule calls with every finished evaluation (not the sanity check).

    `on_evaluation_end` runs on every rank, right after the metrics were logged and before Lightning's
    `on_validation_end` (so before the checkpoint callbacks look at the monitored metric).
    """

    def on_evaluation_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, evaluation: Evaluation
    ) -> None:
        """Handle a finished evaluation; the default does nothing."""


def dispatch_evaluation(trainer: pl.Trainer, pl_module: pl.LightningModule, evaluation: Evaluation) -> None:
    """Call `on_evaluation_end` of every EvaluationCallback of `trainer`, in the order they were given."""
    for callback in trainer.callbacks:
        if isinstance(callback, EvaluationCallback):
            callback.on_evaluation_end(trainer, pl_module, evaluation)
