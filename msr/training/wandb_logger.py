"""A WandbLogger whose W&B step is the training step, so media panels and charts share one axis.

Lightning's WandbLogger logs every row at W&B's own step (a counter of `wandb.log` calls: 51, 103...)
and puts the training step in the `trainer/global_step` column; charts use that column, but W&B's
media panels (sample pictures, calibration plots) can only step through W&B's own step. This logger
passes the training step as W&B's step, so both read 250, 500...

A W&B run resumed online continues at the step after the last one it holds. When msr resumes from a
checkpoint older than that (the run was killed between two checkpoints), the steps in between are
logged again; W&B refuses a step below its current one, so those rows keep the values the stopped run
logged (the same values with msr's exact resume on one CPU process). The logger says so once and
does not send them; `csv/metrics.csv` in the run folder holds every row of the resumed run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

log = logging.getLogger(__name__)

STEP_COLUMN = "trainer/global_step"


class TrainingStepWandbLogger(WandbLogger):
    """Lightning's WandbLogger with W&B's step set to the training step of every logged row."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("prefix"):
            raise ValueError("TrainingStepWandbLogger takes no metric prefix")
        super().__init__(*args, **kwargs)
        self._said_held = False

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log `metrics` to the W&B run at W&B step `step` (the training step); no step: W&B's next."""
        if step is None:
            self.experiment.log(dict(metrics))
            return
        self.log_row({**metrics, STEP_COLUMN: step}, step)

    def log_row(self, row: Mapping[str, Any], step: int) -> bool:
        """Log one row (scalars or media) at W&B step `step`; return False when W&B already holds it.

        Rows below the run's current step are not sent (W&B would drop each with a warning); the
        first such row logs one line naming the steps kept from before.
        """
        run = self.experiment
        current = int(getattr(run, "step", 0) or 0)
        if step < current:
            if not self._said_held:
                self._said_held = True
                log.warning(
                    "W&B run %s already holds the steps before %d (logged before this run was resumed); "
                    "it keeps those values and takes this run's from step %d on (csv/metrics.csv has "
                    "every step)",
                    run.id,
                    current,
                    current,
                )
            return False
        run.log(dict(row), step=step)
        return True
